"""Key custody at a site: the passphrase-sealed vault, the site's identity (kit, signing key),
the study's CKKS keys and their sealed distribution between sites."""
