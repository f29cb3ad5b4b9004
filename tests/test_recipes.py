"""recipes.py: the keras recipe's parts against Keras 2.2.4 worked out by hand (Adam's steps, the
clipped loss, the batch order), and what each recipe gives train.py."""
import numpy as np
import pytest
import torch

import recipes


def adam_steps(make, p0, grads):
    """The parameter after each step of optimizer make([p]) fed these gradients (float64)."""
    p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    opt, out = make([p]), []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().tolist())
    return out


def test_keras_adam_steps_as_keras_2_2_4_by_hand():
    # Keras 2.2.4's Adam.get_updates, `it` the counter before the step and t = it + 1:
    #   lr_t = lr / (1 + decay * it) * sqrt(1 - 0.999^t) / (1 - 0.9^t)
    #   m = 0.9 m + 0.1 g,  v = 0.999 v + 0.001 g^2,  p -= lr_t * m / (sqrt(v) + 1e-7)
    # lr 0.1 and decay 0.5, so that the decay shows; p = [1, -1]. The second entry's gradients are
    # 1e-8: sqrt(v) is far below epsilon there, so where epsilon is added decides its step.
    #   it 0: lr_t = 0.1 / 1   * sqrt(0.001)       / 0.1   = 0.0316227766016838
    #   it 1: lr_t = 0.1 / 1.5 * sqrt(0.001999)    / 0.19  = 0.0156877816884970
    #   it 2: lr_t = 0.1 / 2   * sqrt(0.002997001) / 0.271 = 0.0101005298719484
    # entry 0, g = 1, -2, 0.5:
    #   m 0.1,    v 0.001,    sqrt(v) 0.0316227766016838: step  0.0999996837732340, p 0.900000316226766
    #   m -0.11,  v 0.004999, sqrt(v) 0.0707036066972541: step -0.0244068672824148, p 0.924407183509181
    #   m -0.049, v 0.005244001, sqrt(v) 0.0724154748655286: step -0.00683452371460862, p 0.931241707223789
    # entry 1, g = 1e-8 three times:
    #   m 1e-9,    v 1e-19,        sqrt(v) 3.16227766016838e-10: step 0.000315230918326021,
    #                                                                 p -1.00031523091833
    #   m 1.9e-9,  v 1.999e-19,    sqrt(v) 4.47101778122163e-10: step 0.000296741117269710,
    #                                                                 p -1.00061197203560
    #   m 2.71e-9, v 2.997001e-19, sqrt(v) 5.47448719059603e-10: step 0.000272234017886040,
    #                                                                 p -1.00088420605348
    keras = lambda ps, it=0: recipes.KerasAdam(ps, 0.1, decay=0.5, iterations=it)
    grads = [[1.0, 1e-8], [-2.0, 1e-8], [0.5, 1e-8]]
    got = adam_steps(keras, [1.0, -1.0], grads)
    want = [[0.900000316226766, -1.00031523091833], [0.924407183509181, -1.00061197203560],
            [0.931241707223789, -1.00088420605348]]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-13, abs=0)
    # A counter carried over from the folds before (iterations=2): lr_t of it 2 from the first step, with m
    # and v fresh (zero) for the new model: entry 0 steps 0.0101005298719484 * 0.1 / (0.0316227766016838
    # + 1e-7) = 0.0319405789649465, entry 1 0.0101005298719484 * 1e-9 / (3.16227766016838e-10 + 1e-7)
    # = 0.000100686898788773.
    got = adam_steps(lambda ps: keras(ps, 2), [1.0, -1.0], grads[:1])
    assert got[0] == pytest.approx([0.968059421035054, -1.00010068689879], rel=1e-13, abs=0)
    # torch's Adam adds epsilon to the bias-corrected sqrt(v): its first step on the 1e-8 gradient is
    # lr * 1e-8 / (1e-8 + 1e-7) = 0.00909, 29 times Keras' 0.000315
    torch_adam = lambda ps: torch.optim.Adam(ps, lr=0.1, eps=1e-7)
    torch_step = -1.0 - adam_steps(torch_adam, [1.0, -1.0], grads)[0][1]
    assert torch_step == pytest.approx(0.1 / 11, rel=1e-6)


def test_keras_crossentropy_value_gradient_and_clip():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [40.0, 0.0, 0.0], [-40.0, 0.0, 0.0]],
                          requires_grad=True)
    target = torch.tensor([0, 2, 0, 0])   # sample 3 saturated (p = 1), sample 4 hopeless (p ~ 1e-18)
    loss = recipes.keras_crossentropy(logits, target)
    loss.backward()
    z = logits.detach().double().numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    py = p[np.arange(4), target.numpy()]
    clipped = np.clip(py, 1e-7, 1 - 1e-7)
    assert loss.item() == pytest.approx(np.mean(-np.log(clipped)), rel=1e-6)
    onehot = np.eye(3)[target.numpy()]
    inside = (py > 1e-7) & (py < 1 - 1e-7)
    want = (p - onehot) * inside[:, None] / 4   # no gradient beyond the clip (K.clip)
    assert np.allclose(logits.grad.numpy(), want, atol=1e-7)
    assert not logits.grad[2:].any() and logits.grad[:2].abs().min() > 0
    # torch's cross-entropy is not clipped
    plain = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, target), logits)[0]
    assert plain[3].abs().max() > 0.2


def test_authors_order_is_subjects_then_sheet_order():
    subjects = np.array(["02", "01", "02", "03", "01", "02"])
    assert recipes.authors_order(np.arange(6), subjects).tolist() == [1, 4, 0, 2, 5, 3]
    assert recipes.authors_order(np.array([0, 2, 3, 5]), subjects).tolist() == [0, 2, 5, 3]   # held out: 01


def test_class_order_is_class_by_class_each_in_sheet_order():
    # STSTNet's main.py: label folder by label folder, unshuffled; held-out samples stay out
    labels, subjects = np.array([2, 0, 1, 0, 2, 1, 0]), np.array(["01"] * 7)
    assert recipes.order("class", np.arange(7), subjects, labels).tolist() == [1, 3, 6, 2, 5, 0, 4]
    assert recipes.order("class", np.array([0, 2, 3, 4]), subjects, labels).tolist() == [3, 2, 0, 4]
    assert recipes.order("sheet", np.array([4, 0, 2]), subjects, labels).tolist() == [4, 0, 2]


def test_each_recipe_gives_its_optimizer_loss_and_order():
    p = [torch.nn.Parameter(torch.zeros(2))]
    subjects = np.array(["02", "01", "02", "01"])
    for recipe in recipes.RECIPES:
        opt, sched = recipes.optimizer(recipe, p, 1e-3, start_step=5)
        assert isinstance(opt, recipes.KerasAdam if recipe == "keras" else torch.optim.Adam)
        assert (sched is None) == (recipe != "pytorch")   # only the port's decays its lr
        assert recipes.INIT[recipe] in ("keras", "pytorch", "torch")
        want = [1, 3, 0, 2] if recipe == "keras" else [0, 1, 2, 3]
        assert recipes.order(recipes.ORDER[recipe], np.arange(4), subjects, np.zeros(4)).tolist() == want
    assert recipes.optimizer("keras", p, 1e-3, start_step=5)[0].param_groups[0]["iterations"] == 5
    assert recipes.loss("keras") is recipes.keras_crossentropy
