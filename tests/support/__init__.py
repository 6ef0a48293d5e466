"""What many test modules share: free ports, waiting for a condition, tokens, served apps."""
