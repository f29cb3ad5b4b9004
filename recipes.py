"""
The training recipes: how train.py initialises, feeds, optimises and scores a fold's model.

    import recipes
    opt, sched = recipes.optimizer("keras", model.parameters(), 1e-4, start_step=0)
    loss_fn = recipes.loss("keras")
    idx = recipes.order(recipes.ORDER["keras"], train_idx, subjects, labels)   # the batches' order

keras: as the authors' Keras 2 code trained (ME_Autoencoders train_multi_stream.py, DSSN-MER
networks.py): Keras 2.2.4's Adam with its step counter carried across folds, batches in subject
and sheet order, he_normal initialisation, Keras' clipped cross-entropy. pytorch: the port's
(shuffled batches, torch's Adam with Keras' lr decay, zero biases, plain cross-entropy). plain: torch's
Adam at a fixed lr, batches class by class, torch's default initialisation, plain cross-entropy (STSTNet's
main.py). A new recipe is an entry in each table below; train.py records it in the run folder.

The batch order of a recipe that does not shuffle (ORDERS, train.py --batch_order): subject (the
authors'), sheet (the samples' own order: the sheet's or flow CSV's), class (class by class, each in
sheet order: STSTNet's main.py reads its training images label folder by label folder and batches
them unshuffled, so its batches are grouped by class; its published PyTorch log lists each test
subject's samples with the labels in ascending order, so its folders came in class order).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

ADAM_DECAY = 1e-7   # Keras Adam(decay=1e-7): lr / (1 + decay * step)
RECIPES = ("keras", "pytorch", "plain")
INIT = {"keras": "keras", "pytorch": "pytorch", "plain": "torch"}   # network.INITS of each recipe
SHUFFLED = {"keras": False, "pytorch": True, "plain": False}        # batches drawn anew each epoch
ORDERS = ("subject", "sheet", "class")
ORDER = {"keras": "subject", "pytorch": "sheet", "plain": "class"}   # each recipe's batch order
# where each fold's Adam starts counting: the keras recipe's counter runs on across folds
CARRIES_STEPS = {"keras": True, "pytorch": False, "plain": False}


class KerasAdam(torch.optim.Optimizer):
    """Adam as Keras 2.2.4 steps it (keras/optimizers.py, Adam.get_updates), `iterations` being the
    counter before the first step: lr_t = lr / (1 + decay * it) * sqrt(1 - b2^t) / (1 - b1^t) with
    t = it + 1, then p -= lr_t * m / (sqrt(v) + epsilon). Unlike torch's Adam, epsilon (Keras'
    K.epsilon() = 1e-7) is added to sqrt(v), not to the bias-corrected sqrt(v / (1 - b2^t))."""

    def __init__(self, params, lr, decay=ADAM_DECAY, epsilon=1e-7, iterations=0, betas=(0.9, 0.999)):
        super().__init__(params, dict(lr=lr, decay=decay, epsilon=epsilon, iterations=iterations,
                                      betas=betas))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            (b1, b2), it = g["betas"], g["iterations"]
            lr_t = g["lr"] / (1 + g["decay"] * it) * math.sqrt(1 - b2 ** (it + 1)) / (1 - b1 ** (it + 1))
            for p in g["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:   # m and v start at zero for each new model, as Keras' get_updates makes them
                    st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
                st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                p.addcdiv_(st["m"], st["v"].sqrt().add_(g["epsilon"]), value=-lr_t)
            g["iterations"] = it + 1


def keras_crossentropy(logits, target, eps=1e-7):
    """Mean over the batch of Keras' categorical_crossentropy on the softmax output: the
    probabilities are clipped to [eps, 1 - eps] before the log (keras/backend/theano_backend.py),
    so a sample whose true class is beyond the clip gives no gradient."""
    p = logits.float().softmax(1).gather(1, target[:, None])
    return -p.clamp(eps, 1 - eps).log().mean()


def authors_order(idx, subjects):
    """The authors' batch order (create_generator_LOSO): subjects in LOSO order, each subject's
    samples in sheet order; a stable sort of the (sheet-ordered) indices by subject."""
    return idx[np.argsort(subjects[idx], kind="stable")]

def order(kind, idx, subjects, labels):
    """The order (ORDERS) a fold's training samples `idx` (in sheet order) are batched in, epoch
    after epoch; a shuffled recipe permutes it anew each epoch."""
    if kind == "subject":
        return authors_order(idx, subjects)
    if kind == "class":
        return idx[np.argsort(labels[idx], kind="stable")]
    return idx


def optimizer(recipe, params, lr, start_step=0):
    """(optimizer, lr scheduler or None) of a fresh model; `start_step`: the keras recipe's Adam
    counter at this fold's first step."""
    if recipe == "keras":
        return KerasAdam(params, lr, iterations=start_step), None
    opt = torch.optim.Adam(params, lr=lr)
    if recipe == "plain":
        return opt, None
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1.0 + ADAM_DECAY * step))


def loss(recipe):
    return keras_crossentropy if recipe == "keras" else F.cross_entropy
