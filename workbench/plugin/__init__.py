"""The plugin contract: hook specifications, protocols, declared parameters, the registry."""
