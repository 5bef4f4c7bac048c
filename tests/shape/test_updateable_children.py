"""The per-step update walk's children: public, non-property attributes whose value is updateable."""
from congeal.shape.updateable_children import updateable_names


class Part:
    pass


class System:
    def __init__(self):
        self.geometry = Part()
        self.guidance = Part()
        self._hidden = Part()
        self.dataset = Part()
        self.number = 3

    @property
    def derived(self):
        return Part()

    @property
    def broken_in_a_trainer(self):
        raise RuntimeError("not attached to a trainer")

    def __getattr__(self, name):
        if name == "lazy":
            raise RuntimeError("cannot be read here")
        raise AttributeError(name)

    def __dir__(self):
        return list(super().__dir__()) + ["lazy"]


def test_public_updateable_attributes_only():
    names = updateable_names(System(), lambda v: isinstance(v, Part))
    assert sorted(names) == ["geometry", "guidance"]
    assert sorted(updateable_names(System(), lambda v: isinstance(v, Part), skip=())) == ["dataset", "geometry",
                                                                                         "guidance"]
