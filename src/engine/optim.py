"""Which parameters are trained, which of them get weight decay, and the learning-rate schedule."""
import logging


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
                decay_epochs=30, decay_rate=0.1):
    """Per-step learning rates: linear warm-up from ``warmup_lr``, then cosine to ``min_lr`` or step decay."""
    from mindcv.scheduler import create_scheduler

    names = {"cosine": "cosine_decay", "step": "step_decay", "constant": "constant"}
    if scheduler not in names:
        raise ValueError(f"scheduler must be one of {', '.join(names)}, got {scheduler!r}")
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"need at least one epoch and one step per epoch, got epochs={epochs}, "
                         f"steps_per_epoch={steps_per_epoch}")
    kwargs = dict(steps_per_epoch=steps_per_epoch, scheduler=names[scheduler], lr=lr, min_lr=min_lr,
                  warmup_epochs=warmup_epochs, warmup_factor=(warmup_lr / lr if lr > 0 else 0.0),
                  num_epochs=epochs)
    if scheduler == "cosine":
        kwargs["decay_epochs"] = max(epochs - warmup_epochs, 1)
    elif scheduler == "step":
        kwargs.update(decay_epochs=decay_epochs, decay_rate=decay_rate)
    # mindcv warns that decay_epochs exceeds a short run; the step schedule then simply never decays
    factory_log = logging.getLogger("mindcv.scheduler.scheduler_factory")
    level = factory_log.level
    factory_log.setLevel(logging.ERROR)
    try:
        values = create_scheduler(**kwargs)
    finally:
        factory_log.setLevel(level)
    return [float(v) for v in values][: epochs * steps_per_epoch]


def create_optimizer(name, groups, lr, momentum=0.9, nesterov=True, eps=1e-8, betas=(0.9, 0.999)):
    """SGD (momentum, optionally Nesterov), AdamW (decoupled decay, bias-corrected) or LAMB."""
    from mindspore import nn
    from mindcv.optim.adamw import AdamW

    if name == "sgd":
        return nn.Momentum(groups, learning_rate=lr, momentum=momentum, use_nesterov=bool(nesterov))
    if name == "adamw":
        return AdamW(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=eps)
    if name == "lamb":
        return nn.Lamb(groups, learning_rate=lr, beta1=betas[0], beta2=betas[1], eps=eps)
    raise ValueError(f"opt must be one of sgd, adamw, lamb, got {name!r}")
