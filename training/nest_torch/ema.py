"""The exponential moving average both stages keep of their trained weights."""
import contextlib

import torch


@torch.no_grad()
def update(shadows, parameters, decay):
    """shadow ← decay·shadow + (1 − decay)·weight, for each pair."""
    for shadow, p in zip(shadows, parameters):
        shadow.mul_(decay).add_(p.detach(), alpha=1 - decay)


@contextlib.contextmanager
def swapped_in(parameters, shadows):
    """The averages in `parameters` inside the block (none: unchanged), the trained values put back after."""
    parameters = list(parameters)
    live = None
    if shadows is not None:
        with torch.no_grad():
            live = [p.detach().clone() for p in parameters]
            for p, shadow in zip(parameters, shadows):
                p.copy_(shadow)
    try:
        yield
    finally:
        if live is not None:
            with torch.no_grad():
                for p, value in zip(parameters, live):
                    p.copy_(value)
