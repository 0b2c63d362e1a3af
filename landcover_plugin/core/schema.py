"""The class schema: ids 1..254, each with a name and a colour (DESIGN.md, "Class schema").

0 means "no label" in label chips and "no data" in classified rasters; 255 is never a class.
"""
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, replace

from .errors import BadInputError

NO_LABEL = 0
MIN_CLASS_ID, MAX_CLASS_ID = 1, 254

# Colours an analyst expects for common land-cover names (lower-case substrings), then a palette.
_NAMED_COLOURS = [
    ("water", "#1f78b4"), ("river", "#1f78b4"), ("lake", "#1f78b4"), ("sea", "#1f78b4"),
    ("wetland", "#6fb2d8"), ("marsh", "#6fb2d8"),
    ("forest", "#1b7837"), ("tree", "#1b7837"), ("wood", "#1b7837"),
    ("shrub", "#a6a03c"), ("scrub", "#a6a03c"),
    ("grass", "#b8e186"), ("meadow", "#b8e186"), ("pasture", "#d9ef8b"),
    ("crop", "#f1c232"), ("cultivat", "#f1c232"), ("agri", "#f1c232"), ("field", "#f1c232"),
    ("urban", "#d73027"), ("built", "#d73027"), ("artificial", "#d73027"), ("developed", "#d73027"),
    ("road", "#7f7f7f"), ("bare", "#c2a383"), ("barren", "#c2a383"), ("soil", "#c2a383"),
    ("sand", "#f6e8c3"), ("rock", "#9e9e9e"), ("snow", "#f7f7f7"), ("ice", "#e0f3f8"),
    ("cloud", "#ffffff"), ("shadow", "#404040"), ("cleared", "#e5c494"), ("dry", "#d8b365"),
]
_PALETTE = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf",
            "#999999", "#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#a6d854", "#ffd92f", "#e5c494"]
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def default_colour(name: str, index: int) -> str:
    """A sensible colour for a class: by its name when it names a known cover, else a palette."""
    lowered = name.lower()
    for hint, colour in _NAMED_COLOURS:
        if hint in lowered:
            return colour
    return _PALETTE[index % len(_PALETTE)]


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    colour: str

    @property
    def rgb(self) -> tuple:
        return tuple(int(self.colour[i:i + 2], 16) for i in (1, 3, 5))


class ClassSchema:
    """An ordered list of classes; the order is the order of model output channels."""

    def __init__(self, classes):
        self.classes = list(classes)
        self._validate()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_list(cls, items) -> "ClassSchema":
        """From dicts with ``id``, ``name`` and optional ``colour``/``color`` (as in dataset.json)."""
        classes = []
        for index, item in enumerate(items):
            try:
                class_id = int(item["id"])
                name = str(item["name"]).strip()
            except (KeyError, TypeError, ValueError) as exc:
                raise BadInputError(f"Class entry {item!r} needs an integer 'id' and a 'name'.") from exc
            colour = item.get("colour") or item.get("color") or default_colour(name, index)
            classes.append(ClassInfo(class_id, name, str(colour).strip()))
        return cls(classes)

    @classmethod
    def from_names(cls, names) -> "ClassSchema":
        """Ids 1..n in the given order, default colours."""
        return cls([ClassInfo(i + 1, str(n), default_colour(str(n), i)) for i, n in enumerate(names)])

    @classmethod
    def from_json(cls, text: str) -> "ClassSchema":
        return cls.from_list(json.loads(text))

    @classmethod
    def from_table(cls, cells) -> "ClassSchema":
        """From a flat row-major table (id, name, colour, id, name, colour, ...), as a Processing
        matrix parameter gives it. An empty colour cell gets a default colour."""
        cells = list(cells)
        if len(cells) % 3:
            raise BadInputError("The class table needs three columns: id, name, colour.")
        rows = [cells[i:i + 3] for i in range(0, len(cells), 3)]
        return cls.from_list([{"id": r[0], "name": r[1], "colour": r[2] or None} for r in rows])

    # -- queries ----------------------------------------------------------------------------------
    def to_list(self) -> list:
        return [asdict(c) for c in self.classes]

    def to_json(self) -> str:
        return json.dumps(self.to_list())

    @property
    def ids(self) -> list:
        return [c.id for c in self.classes]

    @property
    def names(self) -> list:
        return [c.name for c in self.classes]

    def respelled(self, names) -> "ClassSchema":
        """This schema with each class named as in ``names`` where a name there differs from its own only in case
        (a text training layer's 'forest' for a model's 'Forest'); ids and colours unchanged."""
        spelling = {str(n).lower(): str(n) for n in names}
        return ClassSchema([replace(c, name=spelling.get(c.name.lower(), c.name)) for c in self.classes])

    def by_id(self, class_id: int) -> ClassInfo:
        for c in self.classes:
            if c.id == class_id:
                return c
        raise KeyError(class_id)

    def id_for_value(self, value) -> int:
        """Map a label value (an id, a numeric string or a class name, any case) to a class id."""
        text = str(value).strip()
        for c in self.classes:
            if c.name.lower() == text.lower():
                return c.id
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is not None and number.is_integer() and int(number) in self.ids:
            return int(number)
        raise BadInputError(f"Label value {value!r} is not a class of the schema "
                            f"({', '.join(f'{c.id}={c.name}' for c in self.classes)}). "
                            f"Fix the value or add the class to the schema.")

    def __len__(self):
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    def __eq__(self, other):
        return isinstance(other, ClassSchema) and self.classes == other.classes

    def __repr__(self):
        return f"ClassSchema({self.classes!r})"

    def _validate(self):
        if not self.classes:
            raise BadInputError("The class schema is empty: give at least one class (id, name, colour).")
        seen_ids, seen_names = set(), set()
        for c in self.classes:
            if not MIN_CLASS_ID <= c.id <= MAX_CLASS_ID:
                raise BadInputError(f"Class '{c.name}' has id {c.id}; class ids must be 1..254 "
                                    f"(0 is 'no label' / 'no data', 255 is reserved).")
            if not c.name:
                raise BadInputError(f"Class id {c.id} has an empty name.")
            if not _HEX.match(c.colour):
                raise BadInputError(f"Class '{c.name}' has colour {c.colour!r}; use #rrggbb.")
            if c.id in seen_ids:
                raise BadInputError(f"Class id {c.id} appears twice in the schema.")
            if c.name.lower() in seen_names:
                raise BadInputError(f"Class name '{c.name}' appears twice in the schema.")
            seen_ids.add(c.id)
            seen_names.add(c.name.lower())


def spelled_once(values) -> tuple:
    """Text class values that differ only in case ('Forest', 'forest') name one class, as :meth:`ClassSchema.
    id_for_value` reads them: ``(names, variants)``, one name per class (its most used spelling among ``values``,
    which may repeat; ties: the first in sorted order), sorted, and ``{name: [its spellings]}`` for each class
    spelled more than one way."""
    counts = Counter(str(v).strip() for v in values)
    groups = {}
    for spelling in sorted(counts):
        groups.setdefault(spelling.lower(), []).append(spelling)
    names, variants = [], {}
    for spellings in groups.values():
        name = max(spellings, key=counts.__getitem__)  # the first of the most used, in sorted order
        names.append(name)
        if len(spellings) > 1:
            variants[name] = spellings
    return sorted(names), variants
