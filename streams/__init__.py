"""Stream processing: the Faust app, its agents, and the pure decision core they wrap."""
