# Where the real corpora live on this machine (used by stage 1 with --corpus ...). The default corpus
# (--corpus tts) needs none of them: it is synthesised offline.
COMMONVOICE=${COMMONVOICE:-downloads/commonvoice}   # Common Voice release: <lang>/{train,dev,test}.tsv + clips/
KATHBATH=${KATHBATH:-downloads/kathbath}            # AI4Bharat Kathbath
MLS=${MLS:-downloads/mls}                           # Multilingual LibriSpeech (mls_italian/...)
FLEURS=${FLEURS:-downloads/fleurs}                  # google/fleurs: data/<code>/{train,dev,test}.tsv + audio/<split>/
INDICVOICES=${INDICVOICES:-downloads/indicvoices}   # AI4Bharat IndicVoices raw release: <Language>/v1/{train,valid}/
