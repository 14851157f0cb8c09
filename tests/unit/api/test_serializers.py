import pytest

from basic.api.serializers import GenerateStudentsSerializer, StudentSerializer


@pytest.mark.parametrize("name", ["A", "x" * 100, "Ada Lovelace", "Zoë"])
@pytest.mark.parametrize("age", [0, 1, 150, "42"])
def test_valid_students(name, age):
    serializer = StudentSerializer(data={"name": name, "age": age})
    assert serializer.is_valid(), serializer.errors


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "", "age": 10}, "name"),
        ({"name": "   ", "age": 10}, "name"),
        ({"name": "x" * 101, "age": 10}, "name"),
        ({"age": 10}, "name"),
        ({"name": None, "age": 10}, "name"),
        ({"name": "Bob", "age": -1}, "age"),
        ({"name": "Bob", "age": 151}, "age"),
        ({"name": "Bob", "age": 12.5}, "age"),
        ({"name": "Bob", "age": "old"}, "age"),
        ({"name": "Bob", "age": True}, "age"),
        ({"name": "Bob"}, "age"),
    ],
)
def test_invalid_students_name_the_field(data, field):
    serializer = StudentSerializer(data=data)
    assert not serializer.is_valid()
    assert list(serializer.errors) == [field]


@pytest.mark.parametrize("count, ok", [(1, True), (100_000, True), (0, False), (100_001, False), ("x", False)])
def test_generate_count_bounds(count, ok):
    assert GenerateStudentsSerializer(data={"count": count}).is_valid() is ok
