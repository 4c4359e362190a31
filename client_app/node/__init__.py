"""A site's node: the two long-lived processes (site agent and SuperNode), how they are started
through importable entry points, and the controller that starts, stops and watches them."""
