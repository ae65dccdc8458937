"""moohead's command line (installed as ``moohead.cli``)."""
