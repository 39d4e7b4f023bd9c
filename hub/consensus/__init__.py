"""Sans-I/O Tendermint-style BFT consensus: blocks, votes, the replica state machine.

Nothing in this package touches the clock, the network or the disk: time is an argument
(unix ms), randomness is absent, and every effect is an `Action` the shell performs.
"""
