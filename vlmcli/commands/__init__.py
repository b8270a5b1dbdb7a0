"""One module per command; each command function stays thin and calls the plain layers."""
