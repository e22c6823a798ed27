"""The zonda KFP pipeline and the commands that compile, submit or run it locally."""
