"""PyTorch twin of one training run of ours, as the authors' code trains (timm 0.6.5's train.py + their
distillers): timm's models, ``create_optimizer_v2``, its schedulers stepped per epoch (or per update),
``LabelSmoothingCrossEntropy`` / ``SoftTargetCrossEntropy``, clipping by global norm, ``ModelEmaV2``; the OFA
exit branches and the KD / DIST / DKD / RSD / OFA losses written here from the method (docs/method.md).

Where timm 1.0 (installed) differs from the authors' 0.6.5, the twin sets the 0.6.5 behaviour explicitly:
the exit branches' transformer blocks take torch's ``nn.LayerNorm`` (eps 1e-5; timm 1.0's ``Block``
defaults to eps 1e-6). The frozen teacher runs in eval mode (the method; the authors' script also switches
the teacher's BatchNorm to training mode, a defect docs/method.md names). The OFA loss uses
``log_softmax`` where the authors write ``log(softmax(.))``: equal wherever the latter is finite.

PyTorch and timm are test / benchmark dependencies: only ``benchmarks/equivalence.py`` imports this.
"""
import math


FINAL_GRID = 7  # token branches merge patches until about 7 x 7 remain (docs/method.md)


# ----------------------------------------------------------------------------------------------- losses

def ofa_loss(F, torch, logits_s, logits_t, labels, eps, temperature):
    """Batch mean of ``-sum_c w_c log softmax(z_s / T)_c``, ``w = (p_t + m)**eps - m`` (m: one-hot of y)."""
    if labels.ndim == 2:
        labels = labels.argmax(-1)
    p_t = F.softmax(logits_t / temperature, dim=-1)
    mask = F.one_hot(labels, logits_s.shape[-1]).float()
    weight = torch.pow(p_t + mask, eps) - mask
    return (-(weight * F.log_softmax(logits_s / temperature, dim=-1)).sum(-1)).mean()


def kd_loss(F, logits_s, logits_t, temperature):
    """``KL(softmax(z_t/T) || softmax(z_s/T))``, batch mean, times ``T**2``."""
    return F.kl_div(F.log_softmax(logits_s / temperature, -1), F.log_softmax(logits_t / temperature, -1),
                    reduction="batchmean", log_target=True) * temperature ** 2


def dist_loss(F, logits_s, logits_t, beta, gamma, tau):
    """DIST: ``tau**2 (beta * inter + gamma * intra)`` with 1 - mean Pearson over rows, then over columns."""
    y_s, y_t = F.softmax(logits_s / tau, -1), F.softmax(logits_t / tau, -1)

    def pearson(a, b):
        a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
        return ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-8)).mean()

    return tau ** 2 * (beta * (1 - pearson(y_s, y_t)) + gamma * (1 - pearson(y_s.t(), y_t.t())))


def dkd_loss(F, torch, logits_s, logits_t, labels, alpha, beta, temperature):
    """DKD: ``(alpha * TCKD + beta * NCKD) * T**2``, target logit masked by -1000 for NCKD."""
    if labels.ndim == 2:
        labels = labels.argmax(-1)
    mask = F.one_hot(labels, logits_s.shape[-1]).float()
    p_s, p_t = F.softmax(logits_s / temperature, -1), F.softmax(logits_t / temperature, -1)

    def binary(p):
        target = (p * mask).sum(-1, keepdim=True)
        return torch.cat([target, (p * (1 - mask)).sum(-1, keepdim=True)], -1)

    b_s, b_t = binary(p_s), binary(p_t)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(-1).mean()
    log_ns = F.log_softmax(logits_s / temperature - 1000.0 * mask, -1)
    log_nt = F.log_softmax(logits_t / temperature - 1000.0 * mask, -1)
    nckd = F.kl_div(log_ns, log_nt, reduction="batchmean", log_target=True)
    return (alpha * tckd + beta * nckd) * temperature ** 2


def rsd_loss(torch, feat_s, feat_t, kappa):
    """``sum_ij w_ij (C - I)_ij^2``, ``C = n(f_t)^T n(f_s) / B``, ``n`` standardising over the batch (biased std
    + 1e-5), ``w`` 1 on the diagonal and ``kappa`` off it."""
    def standardise(f):
        centred = f - f.mean(0, keepdim=True)
        return centred / (centred.pow(2).mean(0, keepdim=True).sqrt() + 1e-5)

    corr = standardise(feat_t).t() @ standardise(feat_s) / feat_s.shape[0]
    eye = torch.eye(corr.shape[0])
    return ((kappa + (1 - kappa) * eye) * (corr - eye).pow(2)).sum()


# ----------------------------------------------------------------------------------------------- branches

def make_branch_classes(torch, timm):
    """The exit-branch modules, named as docs/method.md's layout (src/convert/branches.py maps them)."""
    nn = torch.nn
    from timm.models.vision_transformer import Block

    def conv(c_in, c_out, kernel, stride=1, groups=1, bias=False):
        layer = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=bias)
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        return layer

    def linear(d_in, d_out, bias=True):
        layer = nn.Linear(d_in, d_out, bias=bias)
        nn.init.trunc_normal_(layer.weight, std=0.02)
        if bias:
            nn.init.zeros_(layer.bias)
        return layer

    class SepConv(nn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.op = nn.Sequential(conv(c_in, c_in, 3, 2, c_in), conv(c_in, c_in, 1), nn.BatchNorm2d(c_in),
                                    nn.ReLU(), conv(c_in, c_in, 3, 1, c_in), conv(c_in, c_out, 1),
                                    nn.BatchNorm2d(c_out), nn.ReLU())

        def forward(self, x):
            return self.op(x)

    class ConvBranch(nn.Module):
        def __init__(self, in_channels, stage, width, num_classes):
            super().__init__()
            if stage == 4:
                layers = [conv(in_channels, width, 1, bias=True)]
            else:
                chans = [in_channels * 2 ** k for k in range(4 - stage)] + [width]
                layers = [SepConv(chans[k], chans[k + 1]) for k in range(4 - stage)]
            self.features = nn.Sequential(*layers)
            self.head = linear(width, num_classes)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))

    class PatchMerging(nn.Module):
        def __init__(self, grid, dim, out_dim, act):
            super().__init__()
            self.grid = grid
            self.norm = nn.LayerNorm(4 * dim)
            self.reduction = linear(4 * dim, out_dim, bias=False)
            self.act = nn.GELU() if act else nn.Identity()

        def forward(self, x):
            b, _, c = x.shape
            x = x.reshape(b, self.grid, self.grid, c)
            x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
            return self.act(self.reduction(self.norm(x.reshape(b, -1, 4 * c))))

    class TokenBranch(nn.Module):
        def __init__(self, num_tokens, embed_dim, stage, width, num_classes, num_prefix_tokens):
            super().__init__()
            grid = math.isqrt(num_tokens - num_prefix_tokens)
            merge_num = max(int(math.log2(grid / FINAL_GRID)), 0)
            merges, dim = [], embed_dim
            for i in range(merge_num):
                merges.append(PatchMerging(grid // 2 ** i, dim, width, act=(i == 0 or i != merge_num - 1)))
                dim = width
            if dim != width:
                merges.append(linear(dim, width))
            self.num_prefix_tokens = num_prefix_tokens
            self.merge = nn.Sequential(*merges) if merges else nn.Identity()
            self.prefix_proj = linear(embed_dim, width) if num_prefix_tokens and embed_dim != width \
                else nn.Identity()
            # timm 0.6.5's Block: qkv without bias, torch's LayerNorm (eps 1e-5)
            self.blocks = nn.Sequential(*[Block(width, num_heads=4, qkv_bias=False, norm_layer=nn.LayerNorm)
                                          for _ in range(max(4 - stage, 1))])
            self.head = linear(width, num_classes)

        def forward(self, x):
            p = self.num_prefix_tokens
            if p:
                x = torch.cat([self.prefix_proj(x[:, :p]), self.merge(x[:, p:])], 1)
                return self.head(self.blocks(x)[:, 0])
            return self.head(self.blocks(self.merge(x)).mean(1))

    class RSDProjector(nn.Module):
        def __init__(self, student_dim, teacher_dim, gamma):
            super().__init__()
            hidden = student_dim * gamma
            self.net = nn.Sequential(linear(student_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.GELU(),
                                     linear(hidden, teacher_dim, bias=False))

        def forward(self, x):
            return self.net(x)

    return ConvBranch, TokenBranch, RSDProjector


# ----------------------------------------------------------------------------------------------- stages

def stage_modules(name, model, stage_blocks=None):
    """The timm modules whose outputs are our student's stages 1..4, and how to bring each to our layout."""
    def tokens(x):  # timm Swin stages are [B, H, W, C]; ours [B, H*W, C]
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def same(x):
        return x

    if name.startswith("resnet"):
        return [(getattr(model, f"layer{i}"), same) for i in range(1, 5)]
    if name.startswith(("deit", "vit", "mixer", "resmlp")):
        return [(model.blocks[i - 1], same) for i in stage_blocks]
    if name.startswith("swin"):
        return [(layer, tokens) for layer in model.layers]
    if name.startswith("convnext"):
        return [(stage, same) for stage in model.stages]
    if name.startswith("mobilenetv2"):
        return [(model.blocks[1], same), (model.blocks[2], same), (model.blocks[4], same), (model.bn2, same)]
    raise ValueError(f"the PyTorch twin has no stage table for student '{name}'")


# ----------------------------------------------------------------------------------------------- distiller

def build_twin_distiller(torch, timm, create_twin, cfg, student_info):
    """``TwinDistiller`` for ``cfg``: timm student and teacher of our names, branches from the method.

    ``student_info``: from our student, what the branches need: ``stage_shapes``, ``stage_kind``,
    ``feature_dim``, ``num_prefix_tokens``, ``stage_blocks``.
    """
    nn, F = torch.nn, torch.nn.functional
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    ConvBranch, TokenBranch, RSDProjector = make_branch_classes(torch, timm)
    distiller = cfg.distiller

    class TwinDistiller(nn.Module):
        def __init__(self):
            super().__init__()
            self.student = create_twin(timm, cfg.student, cfg.num_classes, cfg.image_size)
            self.teacher = None
            if distiller != "none":
                self.teacher = create_twin(timm, cfg.teacher, cfg.num_classes, cfg.image_size)
                self.teacher.eval()
                for p in self.teacher.parameters():
                    p.requires_grad_(False)
            branches = []
            if distiller == "ofa":
                width = max(student_info["feature_dim"], self.teacher.num_features)
                for stage in cfg.stages:
                    shape = student_info["stage_shapes"][stage - 1]
                    if student_info["stage_kind"] == "conv":
                        branches.append(ConvBranch(shape[0], stage, width, cfg.num_classes))
                    else:
                        branches.append(TokenBranch(shape[0], shape[1], stage, student_info["feature_dim"],
                                                    cfg.num_classes, student_info["num_prefix_tokens"]))
            elif distiller == "rsd":
                branches.append(RSDProjector(student_info["feature_dim"], self.teacher.num_features, cfg.rsd_gamma))
            self.branches = nn.ModuleList(branches)
            self.stages = []
            if distiller == "ofa":
                for module, fix in stage_modules(cfg.student, self.student, student_info.get("stage_blocks")):
                    module.register_forward_hook(lambda m, i, out, fix=fix: self.stages.append(fix(out)))
            self.smooth_ce = LabelSmoothingCrossEntropy(cfg.label_smoothing)
            self.soft_ce = SoftTargetCrossEntropy()
            self.w_gt, self.w_kd = cfg.loss_weights[:2]
            self.w_ofa = cfg.ofa_branch_weight
            eps = list(cfg.eps) * (len(cfg.stages) + 1) if len(cfg.eps) == 1 else list(cfg.eps)
            self.branch_eps, self.final_eps = eps[:-1], eps[-1]

        def train(self, mode=True):  # the teacher stays frozen in eval mode
            super().train(mode)
            if self.teacher is not None:
                self.teacher.eval()
            return self

        def forward(self, images, labels):
            """``{term name: weighted loss}`` in our distillers' term order."""
            self.stages.clear()
            ce = self.soft_ce if labels.ndim == 2 else self.smooth_ce
            if distiller == "rsd":
                features = self.student.forward_features(images)
                feat_s = self.student.forward_head(features, pre_logits=True)
                logits_s = self.student.forward_head(features)
            else:
                logits_s = self.student(images)
            terms = {"gt": self.w_gt * ce(logits_s, labels)}
            if distiller == "none":
                return terms
            with torch.no_grad():
                if distiller == "rsd":
                    feat_t = self.teacher.forward_head(self.teacher.forward_features(images), pre_logits=True)
                else:
                    logits_t = self.teacher(images)
            if distiller == "rsd":
                terms["rsd"] = cfg.rsd_weight * rsd_loss(torch, self.branches[0](feat_s), feat_t, cfg.rsd_kappa)
            elif distiller == "kd":
                terms["kd"] = self.w_kd * kd_loss(F, logits_s, logits_t, cfg.temperature)
            elif distiller == "dist":
                terms["kd"] = self.w_kd * dist_loss(F, logits_s, logits_t, cfg.dist_beta, cfg.dist_gamma,
                                                    cfg.temperature)
            elif distiller == "dkd":
                terms["kd"] = self.w_kd * dkd_loss(F, torch, logits_s, logits_t, labels, cfg.dkd_alpha, cfg.dkd_beta,
                                                   cfg.temperature)
            elif distiller == "ofa":
                terms["ofa_final"] = self.w_kd * ofa_loss(F, torch, logits_s, logits_t, labels, self.final_eps,
                                                          cfg.temperature)
                feats = list(self.stages)
                total = 0.0
                for branch, stage, eps in zip(self.branches, cfg.stages, self.branch_eps):
                    total = total + ofa_loss(F, torch, branch(feats[stage - 1]), logits_t, labels, eps,
                                             cfg.temperature)
                terms["ofa_branches"] = self.w_ofa * total
            return terms

    return TwinDistiller()


# ----------------------------------------------------------------------------------------------- training

class TwinTrainer:
    """The authors' training step on the twin: loss -> backward -> clip -> optimizer step -> EMA update ->
    scheduler (``step_update`` after each update, ``step(epoch + 1)`` at each epoch's end)."""

    def __init__(self, torch, timm, twin, cfg, steps_per_epoch):
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2
        from timm.utils import ModelEmaV2

        self.torch, self.twin, self.cfg = torch, twin, cfg
        self.steps_per_epoch = int(steps_per_epoch)
        # timm's 'sgd' is Nesterov SGD, 'momentum' plain momentum; the authors pass no eps / betas (torch defaults)
        opt = {"sgd": "sgd" if cfg.nesterov else "momentum"}.get(cfg.opt, cfg.opt)
        kwargs = {"momentum": cfg.momentum} if cfg.opt == "sgd" else {}
        self.optimizer = create_optimizer_v2(twin, opt=opt, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)
        sched = "step" if cfg.scheduler == "step" else "cosine"
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, sched=sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs,
            decay_rate=cfg.decay_rate, min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr, warmup_epochs=cfg.warmup_epochs,
            step_on_epochs=bool(cfg.lr_per_epoch), updates_per_epoch=self.steps_per_epoch)
        self.ema = ModelEmaV2(twin.student, decay=cfg.ema_decay) if cfg.ema else None
        self.params = [p for p in twin.parameters() if p.requires_grad]
        self.updates = 0
        twin.train()

    def lr(self):
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, images, labels):
        """One update; returns ``({term: value}, lr used)``."""
        torch = self.torch
        lr = self.lr()
        terms = self.twin(images, labels)
        loss = sum(terms.values())
        self.optimizer.zero_grad()
        loss.backward()
        if self.cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.twin.student)
        self.updates += 1
        self.scheduler.step_update(num_updates=self.updates)
        if self.updates % self.steps_per_epoch == 0:
            self.scheduler.step(self.updates // self.steps_per_epoch)
        return {k: float(v.detach()) for k, v in terms.items()}, lr


def state_numpy(module):
    """``{name: float ndarray}`` of a module's state dict in its own precision (integer buffers such as
    num_batches_tracked left out)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items() if v.is_floating_point()}
