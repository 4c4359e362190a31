"""Local learning at a site: the site's train/held-out split, DP-SGD training, local evaluation
of the kept model and permutation importance. Pure computation over data the caller loaded."""
