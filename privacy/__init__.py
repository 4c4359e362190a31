"""Privacy maths and cryptography: DP accounting, CKKS sums, sealing, at-rest encryption."""
