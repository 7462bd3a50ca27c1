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

from espnet_ext.bin.cli import exits_on_user_error, start_cli
from espnet_ext.bin.transcribe import add_system_arguments, load_system
from espnet_ext.decode.demo import make_server

log = logging.getLogger("espnet-lora-demo")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="espnet-lora-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_system_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves other machines too")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


@exits_on_user_error
def main(argv=None) -> None:
    args = start_cli(get_parser(), argv)
    transcriber = load_system(args)
    try:
        server = make_server(transcriber, f"{args.exp.name} (LID head {transcriber.head.kind})", args.host, args.port)
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
