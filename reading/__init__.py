"""Tools that read finished datasets: inspect and verify, draw episodes, export to other formats."""
