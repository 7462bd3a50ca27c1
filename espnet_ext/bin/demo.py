#!/usr/bin/env python3
"""A local web page to try a trained system: upload or record audio, see the language over time, the
segments with their routing, and the transcript.

    espnet-lora-demo --exp egs2/multilingual_lora/asr1/exp/whisper_base_all_r16
    # then open http://127.0.0.1:7860 in a browser (recording needs localhost or https)

The base, the adapters and the LID head load once, as for espnet-lora-transcribe (same options); the
page and its API are espnet_ext.decode.demo. Ctrl-C stops it.
"""
import argparse
import logging
from pathlib import Path

from espnet_ext.bin.cli import exits_on_user_error, start_cli
from espnet_ext.decode.demo import make_server
from espnet_ext.decode.service import UNKNOWN, Transcriber
from espnet_ext.lid.segments import DEFAULT_SWITCH_PENALTY
from espnet_ext.routing.routers import DEFAULT_TAU

log = logging.getLogger("espnet-lora-demo")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="espnet-lora-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", type=Path, required=True, help="a trained exp dir holding adapters/ and lid/<head>/")
    p.add_argument("--lid_head", default="mlp", help="which head under <exp>/lid/ routes")
    p.add_argument("--model_path", default=None, help="local weights for models that need them")
    p.add_argument("--switch_penalty", type=float, default=DEFAULT_SWITCH_PENALTY,
                   help="Viterbi penalty per language switch (nats): higher, fewer segments")
    p.add_argument("--min_confidence", type=float, default=DEFAULT_TAU,
                   help=f"segments below this mean top posterior are marked {UNKNOWN!r}")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves other machines too")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


@exits_on_user_error
def main(argv=None) -> None:
    args = start_cli(get_parser(), argv)
    transcriber = Transcriber(args.exp, args.lid_head, args.model_path, args.switch_penalty, args.min_confidence)
    try:
        server = make_server(transcriber, f"{args.exp.name} (LID head {args.lid_head})", args.host, args.port)
    except OSError as err:
        raise SystemExit(f"espnet-lora-demo: cannot listen on {args.host}:{args.port} ({err}); pick another --port")
    log.info("serving the demo at http://%s:%d (Ctrl-C stops)", args.host, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
