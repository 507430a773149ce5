import math

import pytest
import torch

from dim_sklearn.training import EarlyStopping


def test_stops_after_patience_epochs_without_improvement_and_keeps_the_best_weights():
    model = torch.nn.Linear(2, 1)
    stopping = EarlyStopping(patience=2)
    assert stopping.best_loss == math.inf and stopping.best_state is None and not stopping.should_stop
    stopped_at = None
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 1.5, 1.5, 1.7, 0.1], start=1):
        if stopping.should_stop:
            stopped_at = epoch
            break
        with torch.no_grad():
            model.weight.fill_(epoch)
        assert stopping.update(epoch, loss, model) == (epoch in (1, 2, 4))
    # 2.5 after 2.0 is one bad epoch, then 1.5 improves; 1.5 (equal) and 1.7 are two: stop before epoch 7
    assert stopped_at == 7 and stopping.best_epoch == 4 and stopping.best_loss == 1.5
    assert torch.equal(stopping.best_state["weight"], torch.full((1, 2), 4.0))
    with torch.no_grad():
        model.weight.fill_(99)
    assert stopping.best_state["weight"][0, 0] == 4  # a copy, not the live weights


def test_state_dict_round_trip_resumes_the_count():
    model = torch.nn.Linear(2, 1)
    first = EarlyStopping(patience=3)
    for epoch, loss in enumerate([1.0, 2.0, 2.0], start=1):
        first.update(epoch, loss, model)
    second = EarlyStopping(patience=3)
    second.load_state_dict(first.state_dict())
    assert (second.best_epoch, second.bad_epochs, second.best_loss) == (1, 2, 1.0) and not second.should_stop
    second.update(4, 1.0, model)
    assert second.should_stop


@pytest.mark.parametrize("patience", [0, -1, 1.5, True, None])
def test_patience_is_checked(patience):
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        EarlyStopping(patience)
