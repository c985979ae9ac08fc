"""``coldstation-coordinator serve``: the coordinator as a web application for the team
(issue 19). Pages call the same domain functions as the command line."""
