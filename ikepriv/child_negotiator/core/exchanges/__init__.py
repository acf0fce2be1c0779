"""The ISAKMP exchanges: Main, Aggressive, Quick Mode and Informational."""
