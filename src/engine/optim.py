"""Which parameters are trained, and which of them get weight decay."""


def trainable_params(distiller):
    """Student and branch parameters that require gradients; the teacher's never do."""
    params = [p for p in distiller.student.trainable_params()]
    params += [p for p in distiller.branches.trainable_params()]
    return params


def param_groups(distiller, weight_decay):
    """Two groups: weights with decay; biases and every 1-D parameter (norm scales, layer scales) without."""
    params = trainable_params(distiller)
    decay = [p for p in params if p.ndim > 1 and not p.name.endswith(".bias")]
    no_decay = [p for p in params if not (p.ndim > 1 and not p.name.endswith(".bias"))]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": float(weight_decay)})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    groups.append({"order_params": params})
    return groups


def lr_schedule(scheduler, lr, min_lr, epochs, steps_per_epoch, warmup_epochs=0, warmup_lr=0.0,
                decay_epochs=30, decay_rate=0.1, per_epoch=False):
    """Per-step learning rates: the reference recipes' schedules (timm 0.6.5's), one value per step.

    With ``t = step / steps_per_epoch`` (epochs, fractional; with ``per_epoch`` the whole epoch
    ``floor(step / steps_per_epoch)``) and ``w = warmup_epochs``:

    * warm-up, ``t < w``: ``warmup_lr + t * (lr - warmup_lr) / w``;
    * cosine: ``min_lr + (lr - min_lr) * (1 + cos(pi * t / epochs)) / 2``, where ``t`` counts the warm-up
      epochs too (so the rate after warm-up starts just below ``lr``, as in the paper's runs);
    * step: ``lr * decay_rate ** floor(t / decay_epochs)`` (ImageNet CNN: decays at epochs 30, 60, 90);
    * constant: ``lr``.

    ``per_epoch=True`` is the reference's stepping: timm's schedulers run with ``t_in_epochs`` and are
    stepped once per epoch, so the rate is constant within an epoch, warm-up included (config key
    ``lr_per_epoch``, set by the paper's recipes). ``per_epoch=False`` takes the same values at every epoch
    start and moves every step in between, which keeps one-to-three-epoch runs (demos, tests) from
    spending a whole epoch at the warm-up's starting rate.
    """
    import math

    if scheduler not in ("cosine", "step", "constant"):  # the values of epochs & co. are the config's to check
        raise ValueError(f"scheduler must be one of cosine, step, constant, got {scheduler!r}")
    values = []
    for step in range(epochs * steps_per_epoch):
        t = step // steps_per_epoch if per_epoch else step / steps_per_epoch
        if t < warmup_epochs:
            value = warmup_lr + t * (lr - warmup_lr) / warmup_epochs
        elif scheduler == "cosine":
            value = min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * t / epochs))
        elif scheduler == "step":
            value = lr * decay_rate ** math.floor(t / decay_epochs)
        else:
            value = lr
        values.append(float(value))
    return values


def create_optimizer(name, groups, lr, momentum=0.9, nesterov=True, eps=1e-8, betas=(0.9, 0.999)):
    """SGD (momentum, optionally Nesterov), AdamW (decoupled decay, bias-corrected) or LAMB.

    ``sgd`` is ``torch.optim.SGD``'s update: with ``g = grad + wd * p`` (L2 decay of the group, in the
    gradient), ``buf = momentum * buf + g`` (dampening 0; the first step ``buf = g``), then
    ``p -= lr * (g + momentum * buf)`` with Nesterov, ``p -= lr * buf`` without. It is MindSpore's ``nn.SGD``:
    ``nn.Momentum(use_nesterov=True)`` applies plain momentum in MindSpore 2.x (measured: one parameter at 1.0,
    gradient 1, lr 0.1, momentum 0.9, two steps end at 0.71 either way; Nesterov gives 0.539).
    """
    from mindspore import nn
    from mindcv.optim.adamw import AdamW

    if name == "sgd":
        if nesterov and momentum <= 0:
            raise ValueError(f"key 'nesterov': Nesterov momentum needs momentum > 0, got momentum={momentum}; "
                             f"set nesterov: false for plain SGD")
        return nn.SGD(groups, learning_rate=lr, momentum=float(momentum), dampening=0.0, weight_decay=0.0,
                      nesterov=bool(nesterov))
    if name == "adamw":
        return AdamW(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=eps)
    if name == "lamb":
        return nn.Lamb(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=eps)
    raise ValueError(f"opt must be one of sgd, adamw, lamb, got {name!r}")
