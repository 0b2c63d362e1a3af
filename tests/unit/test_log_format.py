"""How engine events read in the Log (qgis_glue/log_format.py): compact aligned epoch lines, few labels."""
from landcover_plugin.qgis_glue.log_format import PAD, EpochLog, ProgressText, TimeLeft, duration


def epoch_event(epoch, miou, loss=0.8, phase=None):
    values = {"train_loss": 1.23456, "val_loss": loss, "val_accuracy": 0.5666, "val_miou": miou,
              "val_iou_water": 1.0, "val_iou_forest": 0.05, "lr": 0.00091, "train_seconds": 2.0,
              "chips_per_second": 72.75, "epoch_seconds": 2.5}
    if phase == "refit":
        values = {k: v for k, v in values.items() if not k.startswith("val_")}
    if phase:
        values["phase"] = phase
    return {"event": "metric", "epoch": epoch, "values": values}


def test_an_epoch_is_one_line_of_percentages_and_a_line_of_class_iou():
    text = EpochLog().render(epoch_event(1, 0.2788), fraction_done=0.25, elapsed=30.0)
    first, second = text.split("\n")
    assert first.startswith("Epoch 1:") and "loss 1.235 / 0.800 val" in first
    assert f"OA {PAD}56.7 %" in first and "mIoU" in first and "27.9 %" in first
    assert "best" in first and "2.5 s" in first and "ETA 1:30 min" in first
    assert "=" not in text and "lr" not in text and "chips_per_second" not in text
    assert second.strip("\u00a0") == "IoU: water 100.0 %, forest 5.0 %"


def test_a_class_without_a_score_reads_n_a_without_a_percent_sign():
    """eo-learn's class 1 (11 px, none in the validation chips, not predicted) showed 'class 1 n/a %'."""
    event = epoch_event(1, 0.2788)
    event["values"]["val_iou_class 1"] = None
    second = EpochLog().render(event).split("\n")[1]
    assert second.strip("\u00a0") == "IoU: water 100.0 %, forest 5.0 %, class 1 n/a"


def test_columns_line_up_whatever_the_epoch_and_the_best_marker_follows_the_trainer():
    log = EpochLog()
    lines = [log.render(epoch_event(e, m, loss)).split("\n")[0]
             for e, m, loss in ((9, 0.30, 0.8), (10, 0.25, 0.7), (11, 0.30, 0.6))]
    widths = [line.replace(PAD, "0") for line in lines]  # a pad is one digit wide in the dialog's font
    assert len({w.index("loss") for w in widths}) == 1 and len({w.index("mIoU") for w in widths}) == 1
    assert ["best" in line for line in lines] == [True, False, True]  # a tie wins on the lower validation loss


def test_the_refit_starts_its_own_phase_without_validation_columns():
    log = EpochLog()
    log.render(epoch_event(1, 0.5))
    refit = log.render(epoch_event(1, None, phase="refit"))
    assert refit.startswith("Refit epoch 1:") and "loss 1.235" in refit
    assert "mIoU" not in refit and "best" not in refit and "IoU:" not in refit


def test_a_cross_validation_fold_says_which_and_keeps_its_own_best():
    log = EpochLog()
    log.render(epoch_event(1, 0.5))
    fold = log.render(epoch_event(1, 0.2, phase="fold 2/4"))
    assert fold.startswith("Fold 2/4 epoch 1:") and "best" in fold and "IoU: water" in fold


def test_other_commands_metrics_stay_generic():
    assert EpochLog().render({"event": "metric", "epoch": 1, "values": {"steps": 6, "seconds": 0.3}}) \
        == "Epoch 1: steps 6, seconds 0.3"


def test_the_label_changes_once_per_kind_of_step():
    text = ProgressText()
    shown = [text.label_for(m) for m in ("epoch 1/3: batch 1/8", "epoch 1/3: batch 2/8", "epoch 1/3: validating",
                                         "epoch 2/3: batch 1/8", "tile 4/156", "building overviews", "done",
                                         "window 3/90, 2 chips", "window 4/90, 3 chips", "band 2 of 4: 7 read")]
    assert [s for s in shown if s] == ["Training (each batch in the progress bar; each epoch in the log)",
                                       "Validating each epoch on the validation chips", "Classifying tiles",
                                       "Building overviews", "Cutting the raster into chips", "band of: read"]


def test_time_left_is_told_once_when_the_first_steps_make_it_sound():
    now = [0.0]
    left = TimeLeft(clock=lambda: now[0])
    assert left.update(0.0) is None
    now[0] = 2.0
    assert left.update(0.05) is None  # too early to say
    now[0] = 10.0
    assert left.update(0.10) == "Estimated time left: about 1:30 min (from the first 10 % in 10 s)."
    now[0] = 20.0
    assert left.update(0.2) is None
    quick = TimeLeft(clock=lambda: now[0])
    quick.update(0.0)
    now[0] = 26.0
    assert quick.update(0.7) is None  # a short run that is nearly done needs no estimate


def test_durations_read_naturally():
    assert [duration(s) for s in (0.42, 42, 185, 3723)] == ["0.4 s", "42 s", "3:05 min", "1:02:03 h"]
