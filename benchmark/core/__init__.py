"""The base every layer may use: user errors, seeding, memory, the machine's description."""
