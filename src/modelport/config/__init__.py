"""Server settings and model configuration (config.pbtxt): parse, complete, validate, describe."""
