"""The only code that parses argv or prints: the parser, one module per verb group, the consoles."""
