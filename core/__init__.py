"""Small building blocks that any app may use and that import no app: the bottom floor."""
