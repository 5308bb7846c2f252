import pytest

from image_batch.common.slug import context_folder


@pytest.mark.parametrize(
    "context, folder",
    [
        ("Food & Beverage", "food-beverage"),
        ("nature", "nature"),
        ("World Knowledge", "world-knowledge"),
        ("  Café  Crème!! ", "cafe-creme"),
        ("Ｆｕｌｌｗｉｄｔｈ ２０２６", "fullwidth-2026"),
        ("--Arts/Crafts--", "arts-crafts"),
        ("Straße", "strae"),
        ("日本語", ""),
        ("!!!", ""),
    ],
)
def test_context_folder(context, folder):
    assert context_folder(context) == folder
