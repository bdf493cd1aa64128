"""The budget sweep every latent codec must pass, shared by the codec tests."""


def sweep_budgets(codec, obs, budgets) -> list:
    """Compress ``obs`` at each of ``budgets`` (ascending) and check the rate range of a latent codec.

    Every payload fits its budget and reports its allocation (``codec.last_allocation``); sizes grow
    with the budget; a frame fits in 32 bits; 8,000 bits buy more than 4,000 (the residual layer
    spends large budgets). Returns the payloads, in the order of ``budgets``.
    """
    payloads = []
    for budget in budgets:
        payload = codec.compress(obs, budget)
        assert payload.nbits <= budget, (codec.name, budget, payload.nbits)
        assert codec.last_allocation == codec.allocation_of(payload)
        payloads.append(payload)
    sizes = [payload.nbits for payload in payloads]
    assert sizes == sorted(sizes), sizes  # the frame grows with the budget
    assert not codec.compress(obs, 32).is_empty, "a frame fits in 32 bits"
    assert codec.compress(obs, 8_000).nbits > 4_000, "the residual layer spends large budgets"
    return payloads
