"""The training report's sections that the model card and the chip dataset tell: the held-out estimate, the scene's
class shares the map is weighed by, how far another date's light changes the map, the data (bands, chips, rasters,
how validation was held out) and the run's settings. Standard library only, as :mod:`.report`."""
from ..band_choice import band_label, describe_choices, source_choices
from ..chips.dataset import raster_sources
from ..html_cells import escape, key_value_table, percent
from ..model.class_shares import STRENGTH, vanishing_warning
from ..model.map_record import LIGHT_FRAGILE
from ..model.metadata import card_resolution_m
from .options import duration_text


def heldout_section(heldout) -> str:
    if not heldout or heldout.get("overall_accuracy") is None:
        return ('<p class="note">No held-out estimate: there was no validation data. Check the map with '
                "'Assess accuracy' against independent reference data.</p>")
    rows = [("Overall accuracy", percent(heldout.get("overall_accuracy"))),
            ("Mean IoU", percent(heldout.get("mean_iou"))), ("How it was measured", heldout.get("method", ""))]
    if heldout.get("raw_overall_accuracy") is not None and heldout.get("class_shares"):
        rows.append(("Unweighted, on the held-out pixels",
                     f"overall accuracy {percent(heldout['raw_overall_accuracy'])}, "
                     f"mean IoU {percent(heldout.get('raw_mean_iou'))}"))
    if heldout.get("polygons") is not None:
        rows.append(("Held-out polygons", heldout["polygons"]))
    if heldout.get("pixels") is not None:
        rows.append(("Held-out pixels", f"{heldout['pixels']:,}"))
    text = key_value_table(rows)
    if heldout.get("few"):
        text += (f'<p class="warn">It rests on only {escape(heldout.get("polygons"))} held-out polygons: treat it as '
                 "rough (about &plusmn;0.1) and check the map with 'Assess accuracy'.</p>")
    if heldout.get("unvalidated_classes"):
        text += f'<p class="note">Not validated: {escape(", ".join(heldout["unvalidated_classes"]))}.</p>'
    if heldout.get("labels_cover") is not None:
        text += (f'<p class="warn">The labels cover {percent(heldout["labels_cover"])} of the image\'s valid pixels, '
                 "and the held-out blocks lie among them: the estimate is of that part. Beyond it the map is usually "
                 "less accurate; check it there with 'Create reference sample' and 'Assess accuracy'.</p>")
    if heldout.get("confused"):
        text += '<p class="note">Most confused on held-out pixels: ' + "; ".join(
            f"{escape(a)} mapped as {escape(b)} ({percent(s)})" for a, b, s in heldout["confused"]) + ".</p>"
    unweighed = heldout.get("unweighed") or {}
    if heldout.get("classes_weighed") and unweighed.get("overall_accuracy") is not None:
        text += ('<p class="note">This estimate is of the map with the classes weighed by the scene\'s shares, as '
                 "Classify maps by default (next section). With 'Weigh classes by the scene's shares' off: overall "
                 f"accuracy {percent(unweighed['overall_accuracy'])}, mean IoU "
                 f"{percent(unweighed.get('mean_iou'))}.</p>")
    elif heldout.get("classes_unweighed"):  # cards written before the estimate weighed the classes
        text += ('<p class="note">This estimate is of the map with the classes unweighed (Classify\'s '
                 "'Weigh classes by the scene's shares' off). Weighed, as Classify maps by default (next section), "
                 "a map is usually more accurate.</p>")
    return text


def class_shares_section(card) -> str:
    """The scene's class shares the trainer estimated and the weights Classify applies (models trained on
    polygons; core/model/class_shares.py), or nothing."""
    entry = card.get("class_shares")
    if not entry:
        return ""
    names = {c["id"]: c["name"] for c in card.get("classes") or []}
    mapped = entry.get("map_shares") or {}
    on_map = list(zip(mapped["weighed"], mapped["unweighed"])) if mapped else [None] * len(entry["class_ids"])
    body = "".join(f"<tr><td>{escape(names.get(i, i))}</td><td>{percent(scene)}</td><td>{percent(learned)}</td>"
                   f"<td>{weight:.3f}</td>" + ("".join(f"<td>{percent(v)}</td>" for v in shares) if shares else "")
                   + "</tr>" for i, scene, learned, weight, shares in
                   zip(entry["class_ids"], entry["scene_shares"], entry["learned_shares"], entry["weights"], on_map))
    lost = vanishing_warning(entry, [names.get(i, i) for i in entry["class_ids"]], "the sample")
    if entry.get("strength", STRENGTH) < STRENGTH:
        lost = (f"Weighed more gently than usual (strength {entry['strength']}, usually {STRENGTH}): at the usual "
                "strength the map lost classes the scene has; the training log names them. " + lost).strip()
    how = ("Estimated from the model's own probabilities over a sample of the source raster"
           if entry.get("found_by", "em") == "em" else
           "Counted on the model's own map over a sample of the source raster (estimating them from its "
           "probabilities went astray: " + ", ".join(
               f"{escape(names.get(i, i))} {percent(em)}" for i, em, counted in
               zip(entry["class_ids"], entry.get("em_shares") or [], entry["scene_shares"])
               if (i in entry["em_astray_ids"] if "em_astray_ids" in entry else em > counted))
           + "; the model's probabilities are not reliable enough for it)")
    return ("<h2>Class shares of the scene</h2>"
            f'<p class="note">Polygons sample classes about evenly, a scene does not. {how}; Classify multiplies '
            "each class's probability by its weight (by default; 'Weigh classes by the scene's shares' off for the "
            "model's own).</p>"
            '<table><thead><tr><th>Class</th><th>Share of the scene (estimated)</th><th>Share the model learned'
            "</th><th>Weight</th>" + ("<th>Share of the map over the sample (weighed)</th><th>Share of the map "
                                      "(weighing off)</th>" if mapped else "")
            + f"</tr></thead><tbody>{body}</tbody></table>" + (f'<p class="warn">{escape(lost)}</p>' if lost else ""))


def light_section(card) -> str:
    """How far 5 % more or less light changes the model's labels on its training raster (the trainer's
    training/light_sensitivity.py), or nothing for cards without it."""
    entry = card.get("light_sensitivity")
    if not isinstance(entry, dict) or entry.get("brighter") is None:
        return ""
    names = (card.get("bands") or {}).get("names") or []
    bands = entry.get("bands") or []
    worst = max(range(len(bands)), key=bands.__getitem__) if bands else None
    rows = [(f"Every band {percent(entry['gain'])} brighter", f"{percent(entry['brighter'])} of the labels change"),
            (f"Every band {percent(entry['gain'])} darker", f"{percent(entry['darker'])} of the labels change")]
    if worst is not None:
        rows.append(("The band that matters most alone", f"{band_label(names, worst)}: {percent(bands[worst])} "
                                                        f"change when it alone is {percent(entry['gain'])} brighter"))
    if max(entry["brighter"], entry["darker"]) >= LIGHT_FRAGILE:
        note = ('<p class="warn">Maps of other dates (their light commonly differs by 5-15 %) will differ from this '
                "one where nothing changed on the ground, and can be far less accurate than the held-out estimate, "
                "which is of this raster's light. Classify another date of this place with 'Match to the training "
                "raster', or train with Colour augmentation or with labels on other dates too.</p>")
    else:
        note = ('<p class="note">Measured on the training raster; the held-out estimate is of this raster\'s light '
                "only.</p>")
    return ("<h2>Another date's light</h2>" + key_value_table(rows) + note
            + f'<p class="note">Over {escape(entry.get("tiles"))} tiles of {escape(entry.get("raster"))}.</p>')


def data_section(card, dataset) -> str:
    bands = card.get("bands") or {}
    summary = dataset.get("summary") or {}
    split = dataset.get("split") or {}
    source, of = bands.get("source_bands"), bands.get("source_count")
    all_bands = not source or (source == list(range(1, len(source) + 1)) and of in (None, len(source)))
    chosen = "" if all_bands else f" (source bands {', '.join(map(str, source))} of {of or 'n/a'})"
    if bands.get("source_choices"):
        chosen = f" (per training raster: {describe_choices(source_choices(bands))})"
    rows = [("Bands", f"{bands.get('count', 'n/a')}: {', '.join(bands.get('names') or [])}{chosen}"),
            ("Input data type", card.get("input_dtype", "n/a")),
            ("Tile size", f"{card.get('tile_size', 'n/a')} px"),
            ("Resolution", resolution_text(card))]
    if summary:
        rows += [("Chips", f"{summary.get('chips', 'n/a')} ({summary.get('train_chips', 'n/a')} training, "
                           f"{summary.get('val_chips', 'n/a')} validation) of {dataset.get('chip_size')} px")]
    if split:
        how = split.get("method", "n/a")
        if how == "polygons":
            how += (f": {split.get('val_polygons')} of {split.get('polygon_groups')} polygon groups held out "
                    f"whole for validation")
        rows.append(("Validation split", how))
    for index, source in enumerate(raster_sources(dataset), start=1):
        if not source:
            continue
        several = f" {index}" if dataset.get("sources") else ""
        chips = f" ({source['chips']} chips)" if several and source.get("chips") is not None else ""
        rows.append((f"Source image{several}", f"{source.get('image', 'n/a')}{chips}"))
        rows.append((f"Labels{several}", f"{source.get('labels', 'n/a')} ({source.get('labels_kind', '')})"))
    return key_value_table(rows)


def settings_section(card) -> str:
    training = dict(card.get("training") or {})
    network = card.get("network") or {}
    if "time_limit_minutes" in training:
        limit = training.pop("time_limit_minutes")
        training["time_limit"] = duration_text(limit) if limit else "none"
    rows = [(key.replace("_", " "), value) for key, value in training.items()]
    if network:
        rows.append(("base width", network.get("base_width")))
    return key_value_table(rows) if rows else '<p class="note">The model card holds no run settings.</p>'


def resolution_text(card) -> str:
    metres = card_resolution_m(card)
    if not metres:
        return "n/a"
    sides = card["resolution"]
    shown = f"{metres:.3g} m" if abs(float(sides[0]) - float(sides[-1])) <= 0.01 * metres else (
        f"{metres:.3g} m ({float(sides[0]):.3g} m east-west by {float(sides[-1]):.3g} m north-south)")
    return shown + " per pixel on the ground (the training raster's, at its centre)"
