"""Code shared by the Lambda functions. Importing it puts the configuration document named by
NBC_CONFIG_LOCATION (S3 or SSM) in force, once per cold start, before any handler reads settings."""

from model.adapters.config_source import load_configured

load_configured()
