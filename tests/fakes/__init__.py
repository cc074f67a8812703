"""Fakes of outside services for the test suite and the benchmarks: real servers on loopback
that the real clients talk to (the anthropic SDK 2.x uses httpx2, so transport-level mocks
would not intercept it)."""
