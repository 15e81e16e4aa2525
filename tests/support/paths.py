"""Where the shared material lives: ``../shared`` beside the repository (CI lays it there),
else /work/shared (the development machines)."""
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
_CANDIDATES = [REPO.parent / "shared", pathlib.Path("/work/shared")]
SHARED = next((p for p in _CANDIDATES if (p / "interop").is_dir()), _CANDIDATES[-1])
CAPTURES = SHARED / "interop" / "captures"
INTEROP = SHARED / "interop"
TEST_VECTORS = SHARED / "TEST-VECTORS.md"
