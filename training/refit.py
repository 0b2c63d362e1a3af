"""Held-out polygons first, then the exported model: the estimate and the epoch count come from a run that
never saw the held-out polygons (or from cross-validation over polygon groups), the model from a refit on all."""
import time
from dataclasses import replace

from landcover_plugin.core.errors import Cancelled
from landcover_plugin.core.events import RecordingEvents

from .choices import check_training_pixels
from .crossval import cross_validate
from .dataset import ChipStore
from .folds import plan_folds
from .loaders import steps_per_epoch

CV_BELOW = 40  # fewer polygons held out by the exporter than this: cross-validate for the held-out estimate


def train_then_refit(config, spec, device, events, split, training) -> dict:
    """With polygons held out: estimate the map's accuracy on polygons the model never saw, and the epoch count;
    then train the exported model again on every polygon for that many epochs. With few held-out polygons
    (under CV_BELOW) by cross-validation over polygon groups (crossval.py), else on the exporter's held-out
    polygons. A time limit is shared by :func:`held_out_share`.
    ``training``: the class that runs one training (loop.py's ``_Training``)."""
    started = time.perf_counter()
    budget = config.time_limit_minutes
    store = ChipStore(spec, config.cache_mb, events)
    check_training_pixels(store, [i for i, chip in enumerate(spec.chips) if chip.split == "train"],
                           spec.schema.names, spec.folder, RecordingEvents())  # the folds log their own counts
    plan = None
    if config.cv_folds >= 2 and (split.get("val_polygons") or 0) < CV_BELOW \
            and all(chip.window is not None for chip in spec.chips):
        plan = plan_folds(store.labels, [chip.place for chip in spec.chips], config.cv_folds, config.seed)
    share = held_out_share(config, spec, plan) if budget else None
    if plan is not None:
        chosen, cancelled = cross_validate(plan, config, spec, store, device, events, training,
                                           minutes=share * budget if budget else None)
        if cancelled is not None:
            return cancelled.finish()
        pending, heldout = (chosen["confusion"], chosen["split"], chosen["heldout_pixels"]), None
    else:
        first = replace(config, time_limit_minutes=share * budget if budget else None)
        held_run = training(first, spec, device, events, store=store, progress_span=(0.0, 0.6))
        held_run.interim = True  # the refit's model replaces it
        held = held_run.run()
        if held["cancelled"] or held["BEST_EPOCH"] is None:
            return held
        selected = dict(held_run.run_state["best"] or {}, val_source=(
            f"the held-out polygons, scored at epoch {held['BEST_EPOCH']} (the best) of a run that never saw them"))
        pending, heldout = None, held["HELDOUT"]
        chosen = {"epochs": int(held["BEST_EPOCH"]), "architecture": held["architecture"],
                  "planned": held_run.config.epochs, "fold_epochs": [len(held_run.run_state["history"])],
                  "val_miou": held["BEST_VAL_MIOU"], "val_accuracy": held["BEST_VAL_ACCURACY"],
                  "curves": (held["CURVES_CSV"], held["CURVES_PNG"]), "epochs_run": held["epochs_run"],
                  "stopped_by": held.get("stopped_by"), "best": selected}
    epochs = chosen["epochs"]
    left = budget - (time.perf_counter() - started) / 60.0 if budget else None
    longer = _cut_while_improving(chosen)
    if longer:
        events.info(f"Training again on all polygons (the held-out ones too) for the exported model, for the time "
                    f"left (up to {chosen['planned']} epochs): the time limit stopped the held-out "
                    f"{'folds' if plan is not None else 'run'} at epoch {epochs} while "
                    f"{'their pooled held-out loss' if plan is not None else 'its held-out mIoU'} was still at its "
                    f"best, so more epochs are likely to help. The held-out estimate is of {epochs} epochs: the "
                    f"model will have more.")
    else:
        events.info(f"Training again on all polygons (the held-out ones too) for {epochs} epochs, the best count on "
                    f"the held-out polygons, for the exported model.")
    second = replace(config, architecture=chosen["architecture"], epochs=chosen["planned"] if longer else epochs,
                     patience=0,
                     work_dir=str(config.checkpoint_dir / "refit"),
                     time_limit_minutes=max(left, 0.1) if left is not None else None)
    everything = replace(spec, chips=[replace(chip, split="train") for chip in spec.chips])
    final = training(second, everything, device, events, final_fit=True, heldout=heldout or pending,
                     store=store, progress_span=(0.8 if plan is not None else 0.6, 1.0))
    final.min_epochs = epochs  # the estimate is of that many: the time left may not cut the model shorter
    # the card records the analyst's time limit (not the refit's share of it) and what ended the selection
    # and the validation figures that chose the epoch count: the refit itself has none
    final.run_state.update(time_limit_minutes=budget, selection_stopped_by=chosen.get("stopped_by"),
                           selection_best=chosen.get("best"))
    final_state = final.fit()
    if final_state["cancelled"] and not final_state["epoch"]:
        return _cancelled_before_the_refit(config, held if plan is None else None, events)
    final = final.finish()
    selection = {"BEST_VAL_MIOU": chosen["val_miou"], "BEST_VAL_ACCURACY": chosen["val_accuracy"],
                 "BEST_EPOCH": epochs, "CURVES_CSV": chosen["curves"][0], "CURVES_PNG": chosen["curves"][1]}
    if plan is not None:
        selection.update(cv_folds=plan.folds, fold_epochs=chosen["fold_epochs"])
    return dict(final, **selection, refit_epochs=final["epochs_run"], refit_longer=longer,
                refit_past_limit_s=final_state.get("past_limit_s"),
                selection_epochs_run=chosen["epochs_run"],
                epochs_run=chosen["epochs_run"] + final["epochs_run"])


def held_out_share(config, spec, plan) -> float:
    """The share of a time limit for the held-out training (the folds together, or the single held-out run); the
    refit gets the rest. 75 % for the folds and 60 % for a single run, unless that leaves the refit less time than
    the held-out training's epochs take over all the chips (the refit must train as many: see epochs.py's
    ``min_epochs``): then in proportion to their training steps. A held-out run on 80 % of the chips gets 44 %
    (the refit's epochs are 1.25 times as long); 2 and 3 folds 50 % and 67 %; 4 folds keep 75 %."""
    chips = [sum(chip.split == "train" for chip in spec.chips)] if plan is None else \
        [plan.training_chip_count(fold) for fold in range(plan.folds)]
    steps = [steps_per_epoch(n, config.batch_size) for n in chips]
    refit = steps_per_epoch(len(spec.chips), config.batch_size)
    return min(0.6 if plan is None else 0.75, sum(steps) / (sum(steps) + refit))


def _cut_while_improving(chosen) -> bool:
    """The time limit stopped the held-out run (or every fold) at the epoch with the lowest held-out loss (the
    best mIoU without folds), its last: it was still improving, so the refit trains on for the time it has left
    rather than stopping at that count. On the Zion sparse polygons 4 minutes gave a ResNet-18 U-Net's folds 4-5
    epochs, all still improving; the refit stopped at 4 with 40 s of its time unused."""
    return (chosen["stopped_by"] == "time limit" and chosen["planned"] > chosen["epochs"]
            and chosen["epochs"] >= min(chosen["fold_epochs"]))


def _cancelled_before_the_refit(config, held, events) -> dict:
    """A cancel before the refit finished an epoch (a SIGTERM while the held-out run exported its model): the refit's
    weights are barely trained, and exporting them replaced the held-out run's finished model with a useless one
    that carried that model's estimate. The held-out run's model stays (written whole before the refit began); after
    cross-validation there is none (the folds export nothing): the run is cancelled with no model."""
    if held is None:
        raise Cancelled(f"Cancelled before the training on all polygons finished an epoch: no model was written (the "
                        f"cross-validation folds export none). Each fold's best weights are in "
                        f"'{config.checkpoint_dir}' (fold1, fold2, ...); train again to make the model.")
    events.warning(f"Cancelled before the training on all polygons finished an epoch: the model '{held['OUTPUT']}' "
                   f"is the one trained without the held-out polygons (epoch {held['BEST_EPOCH']}, the best on them), "
                   f"written whole before that training began.")
    return dict(held, cancelled=True, CANCELLED=True, stopped_by="cancel")


def note_no_cross_validation(config, split, events) -> None:
    """Cross-validation runs only before a refit: its folds choose the epoch count of a model trained on every
    polygon and estimate that model's accuracy. Without the refit the exported model is the one trained on the
    exporter's split, and its own held-out polygons score it; folds would score other models and cost k runs."""
    if config.cv_folds < 2 or (split.get("val_polygons") or 0) >= CV_BELOW:
        return
    why, fix = ("a resumed run continues on its single split", "Start a new run (no resume)") if config.resume \
        else ("the refit is off", "Turn on 'train the exported model again on all polygons'")
    events.info(f"Cross-validation ({config.cv_folds} folds) skipped: {why}. The folds run only before the refit "
                f"on all polygons (they choose its epoch count and estimate that model's accuracy); this model is "
                f"scored on the exporter's {split.get('val_polygons')} held-out polygons alone, a rougher "
                f"estimate. {fix} for the cross-validated estimate.")
