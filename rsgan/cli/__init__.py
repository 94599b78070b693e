"""rsgan's command line: click commands that parse arguments and call library functions."""
