"""What the stages call: placement, train, evaluate, and the command-line plumbing."""
