"""The kinds of parts a scenario is made of, one module each (:mod:`.base` says what a kind
declares); :mod:`.registry` lists them."""
