"""A site's node: the two long-lived processes (site agent and SuperNode), how they are started
through importable entry points, how the site passphrase reaches them (an inherited pipe, never
an environment), and the controller that starts, stops and watches them."""
