"""Studies built on fedjax_deep, each a tenant with its own configs, scripts, tests and results."""
