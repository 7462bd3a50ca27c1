#!/usr/bin/env bash
# Driver of the multilingual LoRA recipe, the counterpart of ESPnet's asr.sh: recipes call it from a
# thin run.sh. Every stage logs under exp/, leaves a .done marker and is skipped on rerun unless
# --force true. The logic lives in Python (espnet_ext.bin.*, local/*.py); this file only sequences it.
#
# Stages (fixed for the whole pipeline):
#   1 data prep   2 (reserved: features/stats)   3 LoRA training, or with --finetune full the full
#   fine-tuning reference system   4 LID training   5 routed decoding (and the trained system's dev set)
#   6 scoring (and dev WER)   7 analysis/report
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}) $*"; }

# General
stage=1                # first stage to run
stop_stage=7           # last stage to run
lang=all               # hi|pa|te|it|all
model=whisper_base     # registry name: python -m espnet_ext.models.registry lists them
model_path=            # local weights for models that need them (whisper_small.., owsm_v4_..)
nj=2                   # parallel jobs per stage
ngpu=0                 # GPUs per job (0: CPU); N > 0: jobs go through cuda_cmd, training through ESPnet's DDP
cmd=                   # run.pl or slurm.pl: that backend of cmd.sh; any other command line: every job's
                       # dispatcher as given (e.g. "slurm.pl --mem 32G"); empty: the backend cmd.sh chooses
mail_type=             # with slurm.pl: Slurm mails you at these job events (sbatch --mail-type), e.g. END,FAIL
threads=               # CPUs per job (sbatch --cpus-per-task; OMP_NUM_THREADS inside it); empty: this
                       # machine's cores shared between the nj parallel jobs
force=false            # rerun stages whose .done marker exists
datadir=data           # where stage 1 writes the Kaldi data dirs (and later stages read them)
grid=                  # a grid file (conf/grid.yaml): stages 3-6 run for each of its models x langs x ranks
                       # as job arrays (espnet_ext/grid.py; with slurm.pl, submitted without waiting)
dry_run=false          # with --grid: print the task table (and with slurm.pl the sbatch scripts) only
expdir=exp             # where every experiment dir, log and RESULTS.md goes
# Stage 1: data
corpus=tts             # tts (offline espeak-ng corpus) | commonvoice | kathbath | mls | fleurs | indicvoices
                       # (paths in db.sh); several real ones in quotes ("kathbath commonvoice") are prepared
                       # each into data/<corpus>/ and mixed (local/mix_corpora.py): one training set with
                       # utt2src, test sets per source (test_<lang>_<corpus>)
mix_ratio=             # each corpus' share of the training hours, in --corpus order, e.g. 0.8,0.2 (empty: equal)
mix_alpha=             # temperature sampling across languages: shares ~ hours**alpha (empty: 1, as they are)
tts_utts_per_split=    # dev/test utterances per language (empty: local/prepare_tts_corpus.py's default, 100)
tts_train_utts=        # training utterances per language (empty: 4 x the dev/test size)
# Stage 3: training (exp/<model>_<lang>_r<rank>[_<tag>]; with finetune=full exp/<model>_<lang>_full[_<tag>])
finetune=lora          # lora: per-language adapters; full: every base weight (the reference system)
lora_rank=16           # 8|16|32|64: picks conf/tuning/train_lora_<model>_r<rank>.yaml
train_config=          # empty: conf/tuning/train_lora_<model>_r<lora_rank>.yaml (full: train_full_<model>.yaml)
train_args=            # extra options for espnet_ext.bin.train_lora (any ESPnet option too)
tag=                   # optional suffix of the experiment name
train_set=             # training data dir (a name under data/ or a path); empty: train_<lang>
# Stage 4: LID heads on the bank's tap (<train_exp>/lid/<head>)
lid_head=asp           # the head the LID routings decode with: linear|mlp|cnn|bilstm|asp
lid_heads=             # heads to train (comma-separated, or all: the five and their comparison); empty: lid_head
lid_members=3          # seeds per head, posteriors averaged (1: a single head; "--lid_heads all --lid_members 1"
                       # compares the five heads in a third of the time)
lid_args=              # extra options for espnet_ext.bin.train_lid
# Stage 5: decoding
routings=              # empty: "none oracle hard" ("none oracle" with --finetune full or one --lang)
                       # none: zero-shot base (exp/<model>_zeroshot); oracle: adapter of utt2lang's
                       # language (finetune=full: the fine-tuned model, utt2lang's language forced);
                       # hard|soft|threshold|hierarchical: routed by the stage-4 LID head; builtin: by the
                       # bare base's own language token; all: every one (python -m espnet_ext.bin.decode --help)
decode_language=oracle # with routing none: oracle forces utt2lang's language; detect: the model's own LID
zeroshot_decode_config=conf/decode_zeroshot.yaml  # base model: the 30 s window it was trained on
lora_decode_config=conf/decode_lora.yaml          # adapters and full fine-tuning: the real length trained on
decode_args=           # extra options for espnet_ext.bin.decode, e.g. "--beam_size 4"
test_sets=             # data dirs to decode (names under data/ or paths); empty: test_<lang> (test_all
                       # for --lang all: languages share batches, result.txt scores each)
# Code-switched speech (stages 1, 5, 6; --lang all with adapters)
codeswitch=false       # true: stage 1 builds {train,dev,test}_cs_{inter,intra,rapid} (local/make_codeswitch.py);
                       # stage 4 trains the frame tagger on train_cs_* (espnet_ext.bin.train_tagger); stage 5
                       # finds the test sets' language segments with it and decodes each set five ways
                       # (cs_variants), stage 6 scores them against oracle segments (~23 min on 2 CPU cores)
cs_per_kind=           # code-switched test utterances per kind (empty: local/make_codeswitch.py's default, 50)
cs_train_per_kind=300  # code-switched training utterances per kind, for the tagger (dev: 20 per kind)
cs_lid_head=tagger     # the head under lid/ that finds the segments: tagger (one encoder pass), or a routing head
                       # (on 1 s windows, each encoded alone)
switch_penalty=        # Viterbi penalty per language switch (empty: espnet_ext.lid.segments' default)
min_segment=           # shortest language segment in seconds (empty: espnet_ext.lid.segments' default)
# Stage 7: what the adapters learned, and the report of every result (exp/report)
probe_per_language=10  # dev utterances per language the representation analysis (CKA, probes) reads
analysis_args=         # extra options for espnet_ext.bin.analyze
studies=               # comma-separated studies stage 7 runs before its report (README "Analysis" lists each
                       # one's time): seeds (2 more trainings, seeds 1 and 2), ranks (the other ranks of 8 16 32 64),
                       # layers (layer importance on importance_per_language dev utterances per language),
                       # phonetic (voicing/place/manner probes on synthesised syllables, data/syllables),
                       # lexical (which frequent training words an utterance holds, per encoder layer),
                       # transfer (each adapter decoding every other language's test set), fewshot (each
                       # target language trained on 25/100/400 utterances from scratch and from the source's
                       # adapter, the source trained alone first), robustness (the degraded copies of test_q: the
                       # zero-shot base, the adapters and LID heads with and without the channels, README "Robustness")
importance_per_language=10  # the layers study's probe utterances per language
lexical_per_language=50     # the lexical study's dev utterances per language
fewshot_pairs="hi:pa hi:te it:te"  # the fewshot study's source:target pairs (the project plan's); full: all 12
fewshot_sizes="25 100 400"         # its target training sizes (utterances)
fewshot_steps="--num_iters_per_epoch 25 --max_epoch 4"  # equal training steps for every size
robustness_per_language=25  # the robustness study's test_q: this many test utterances per language
robustness_conditions="tel mp3 opus snr20 snr10 snr5 reverb voice"  # its degraded copies (local/make_degraded.py)
robustness_config=conf/tuning/train_lora_whisper_base_r16_channels.yaml  # the adapters trained with the channels
robustness_epochs="4 8 16"  # their epochs: the default's 4, and 2x and 4x its steps
robustness_lid_channels="tel mp3 opus reverb snr10"  # the LID heads' channel copy of the training audio
robustness_lid_epochs="20 40 80"  # the LID heads' epochs (train_lid's default 20, 2x, 4x), clean and with the channels

help_message="Usage: $0 [options]
  e.g. $0 --stage 5 --stop_stage 6 --lang te --routings none --decode_language detect"

. ./path.sh
. ./cmd.sh
. ./db.sh  # where the real corpora are (stage 1 with --corpus other than tts), as ESPnet's local/data.sh reads it
. utils/parse_options.sh

case ${cmd} in
    "") ;;
    run.pl) cmd_backend=local; . ./cmd.sh ;;
    slurm.pl) cmd_backend=slurm; . ./cmd.sh ;;
    *) train_cmd=${cmd}; decode_cmd=${cmd}; cuda_cmd=${cmd} ;;
esac
if ! [[ "${ngpu}" =~ ^[0-9]+$ ]]; then
    log "--ngpu ${ngpu}: give the number of GPUs per job, 0 (CPU) or more"
    exit 1
fi
if [ -n "${mail_type}" ]; then
    train_cmd+=" --mail-type ${mail_type}"; decode_cmd+=" --mail-type ${mail_type}"; cuda_cmd+=" --mail-type ${mail_type}"
fi
fit_cmd=${train_cmd}  # stage 3's training job
if [ "${ngpu}" -gt 0 ]; then  # the jobs that run a model on GPUs (training, decoding) ask for them; no other does
    fit_cmd="${cuda_cmd} --gpu ${ngpu}"
    decode_cmd="${cuda_cmd} --gpu ${ngpu}"
fi
if ! [[ "${nj}" =~ ^[1-9][0-9]*$ ]]; then
    log "--nj ${nj}: give the number of parallel jobs per stage, 1 or more"
    exit 1
fi
python -m espnet_ext.bin.recipe_info langs --lang "${lang}" >/dev/null  # an unknown or adapter-less --lang stops here
read -ra corpora <<< "${corpus}"
mixed=false
if [ "${#corpora[@]}" -gt 1 ] || [ -n "${mix_alpha}" ]; then mixed=true; fi
if ${mixed}; then  # the test sets stay per source: in-domain and cross-domain WER side by side
    test_sets=${test_sets:-$(for c in "${corpora[@]}"; do printf 'test_%s_%s ' "${lang}" "${c}"; done)}
fi
test_sets=${test_sets:-test_${lang}}
if [ -z "${routings}" ]; then  # LID routing only where there is something to route
    if [ "${finetune}" = lora ] && [ "${lang}" = all ]; then routings="none oracle hard"; else routings="none oracle"; fi
fi
routings=$(python -m espnet_ext.bin.recipe_info routings --routings "${routings}")
case ${finetune} in  # the trained system's exp dir, default config and exported dir
    lora) train_exp=${expdir}/${model}_${lang}_r${lora_rank}${tag:+_${tag}}
          train_config=${train_config:-conf/tuning/train_lora_${model}_r${lora_rank}.yaml}
          exported=adapters ;;
    full) train_exp=${expdir}/${model}_${lang}_full${tag:+_${tag}}
          train_config=${train_config:-conf/tuning/train_full_${model}.yaml}
          exported=full_model ;;
    *) log "unknown --finetune ${finetune} (lora|full)"; exit 1 ;;
esac
lid_routings=$(python -m espnet_ext.bin.recipe_info lid_routings)  # the routings that read the LID head
for routing in ${routings}; do
    source_of=$(python -m espnet_ext.bin.recipe_info routing_source --routing "${routing}")
    if [ "${finetune}" = full ] && [ "${source_of}" != none ] && [ "${source_of}" != utt2lang ]; then
        log "--routings ${routing} routes adapters; a --finetune full model has none (use --routings \"none oracle\")"
        exit 1
    fi
done
threads_per_job=${threads:-$(python -m espnet_ext.bin.recipe_info threads --nj "${nj}")}  # decoding: nj jobs at once
threads_alone=${threads:-$(python -m espnet_ext.bin.recipe_info threads --nj 1)}        # one job at a time
dev_decode_dir=${train_exp}/decode_dev_${lang}_oracle  # dev WER of the trained system (stages 5 and 6)
decodes_trained=false  # any routing but none decodes the trained system: then its dev set is decoded too
for routing in ${routings}; do [ "${routing}" != none ] && decodes_trained=true; done

done_or_force() { [ -f "$1" ] && [ "${force}" != true ]; }
if ${codeswitch} && { [ "${finetune}" != lora ] || [ "${lang}" != all ]; }; then
    log "--codeswitch true routes segments to the adapters of every language: use it with --lang all (LoRA)"
    exit 1
fi
# The code-switched decodes (decode_<set>_<variant>): oracle = the true segments, each through its
# language's adapter (what the others are compared with); hard = the whole utterance through one routed
# adapter; segments_lid = the segments the LID head finds; *_one_pass = one encoder pass with per-frame
# routing instead of re-encoding each segment alone.
cs_variants="oracle hard segments_lid segments_oracle_one_pass segments_lid_one_pass"
cs_segments=${train_exp}/codeswitch_lid/test  # codeswitch_lid's output: <set>/segments.json
cs_sets() {  # the synthesised code-switched sets (with their true segments_lang; a real corpus' test_cs_<corpus> has none)
    if ${codeswitch}; then (cd "${datadir}" && for d in test_cs_*/segments_lang; do if [ -f "${d}" ]; then echo "${d%/*}"; fi; done); fi
}
cs_decode() {  # set, variant
    local data dir=${train_exp}/decode_$1_$2 found=${cs_segments}/$1/segments.json
    data=$(data_dir_of "$1")
    case $2 in
        oracle) decode_set "${data}" "${dir}" oracle --segments oracle ;;
        hard) decode_set "${data}" "${dir}" hard ;;
        segments_lid) decode_set "${data}" "${dir}" oracle --segments "${found}" ;;
        segments_oracle_one_pass) decode_set "${data}" "${dir}" oracle --segments oracle --one_pass true ;;
        segments_lid_one_pass) decode_set "${data}" "${dir}" oracle --segments "${found}" --one_pass true ;;
    esac
}
decode_dir_of() {  # data set, routing -> decode dir
    local suffix=""
    [ "$2" = none ] && [ "${decode_language}" = detect ] && suffix="_detectlang"
    if [ "$2" = none ]; then
        echo "${expdir}/${model}_zeroshot/decode_$(basename "$1")_none${suffix}"
    else
        echo "${train_exp}/decode_$(basename "$1")_$2"
    fi
}
data_dir_of() {  # a name under data/ or a path
    if [ -d "$1" ]; then echo "$1"; else echo "${datadir}/$1"; fi
}
lid_head_sum() {  # [head]: a LID head's checksum, lid_head's by default (nothing when it is missing: the decode
                  # or segmenter reading it says so)
    cksum 2>/dev/null < "${train_exp}/lid/${1:-${lid_head}}/lid_model.safetensors" || true
}
decode_inputs() {  # routing[, decode.py options]: checksums of the files a decode reads beyond its options (the
                   # LID head of a routing that reads one, a segments file), kept in <decode dir>/.inputs: a decode
                   # made with another head (stage 4 retrained, or --lid_head changed) is redone, not reused
    local routing=$1
    shift
    case " ${lid_routings} " in *" ${routing} "*) lid_head_sum ;; esac
    while [ $# -gt 1 ]; do
        if [ "$1" = --segments ] && [ "$2" != oracle ]; then cksum < "$2"; fi
        shift
    done
}
decode_set() {  # data dir, decode dir, routing[, decode.py options]: nj parallel jobs, then their merge (skipped when done)
    local data=$1 dir=$2 routing=$3 config=${lora_decode_config} language=${decode_language} extra=("${@:4}")
    local system=(--routing "${routing}" --adapter_dir "${train_exp}/adapters" --lid_dir "${train_exp}/lid/${lid_head}")
    [ "${routing}" = none ] && config=${zeroshot_decode_config}
    if [ "${finetune}" = full ] && [ "${routing}" = oracle ]; then  # the fine-tuned model, utt2lang's language
        system=(--routing none --finetuned_dir "${train_exp}/full_model")
        language=oracle
    fi
    local inputs previous
    inputs=$(decode_inputs "${routing}" ${extra[@]+"${extra[@]}"})
    previous=$(cat "${dir}/.inputs" 2>/dev/null || true)
    if done_or_force "${dir}/.done" && [ "${inputs}" = "${previous}" ]; then
        log "${dir} already decoded; --force true to redo"
        return
    fi
    if [ "${inputs}" != "${previous}" ] && [ -d "${dir}" ]; then
        log "${dir} was decoded with another LID head or other segments; decoding it again"
    fi
    log "decoding ${data} with ${model} (routing ${routing}) -> ${dir}"
    if [ "${force}" = true ] || [ "${inputs}" != "${previous}" ]; then  # else a rerun keeps the jobs that finished
        rm -rf "${dir}"/split* "${dir}/.done"
    fi
    mkdir -p "${dir}" && echo "${inputs}" > "${dir}/.inputs"
    ${decode_cmd} --num-threads "${threads_per_job}" JOB=1:"${nj}" "${dir}/log/decode.JOB.log" \
        python -m espnet_ext.bin.decode --model "${model}" ${model_path:+--model_path "${model_path}"} \
            --data_dir "${data}" --out_dir "${dir}" --job JOB --nj "${nj}" \
            --ngpu "${ngpu}" --config "${config}" --language "${language}" "${system[@]}" ${extra[@]+"${extra[@]}"} ${decode_args}
    python -m espnet_ext.bin.decode --merge --nj "${nj}" --out_dir "${dir}" > "${dir}/log/merge.log" 2>&1
    touch "${dir}/.done"
}
lid_dirs() {  # a split's dirs for the LID: the adapters' languages, then each LID-only class prepared
    local d l
    echo "$(data_dir_of "$1_${lang}")"
    for l in $(python -m espnet_ext.bin.recipe_info lid_only_langs); do
        d=$(data_dir_of "$1_${l}"); [ -d "${d}" ] && echo "${d}"
    done
    return 0
}
train_lid_into() {  # out dir, train_lid options: LID heads on this exp's tap (log: <out dir>/log/train_lid.log)
    ${train_cmd} --num-threads "${threads_alone}" "$1/log/train_lid.log" \
        python -m espnet_ext.bin.train_lid --model "${model}" ${model_path:+--model_path "${model_path}"} \
            --adapter_dir "${train_exp}/adapters" --train_dir $(lid_dirs train) --dev_dir $(lid_dirs dev) \
            --test_dir $(lid_dirs test) --out_dir "$1" "${@:2}" ${lid_args}
}
score_set() {  # decode dir, data dir: sclite WER/CER into <decode dir>/result.txt and scores.json
    log "scoring $1"
    ${train_cmd} "$1/log/score.log" python -m espnet_ext.bin.score --decode_dir "$1" --ref_text "$2/text"
}


prepare_corpus() {  # corpus, out dir: its preparer, then the validation of what it wrote
    local args corpus_var
    case $1 in
        tts) args=(local/prepare_tts_corpus.py --out_dir "$2" --nj "${nj}" \
                   --langs $(python -m espnet_ext.bin.recipe_info corpus_langs --lang "${lang}") \
                   ${tts_utts_per_split:+--utts_per_split "${tts_utts_per_split}"} \
                   ${tts_train_utts:+--train_utts "${tts_train_utts}"}) ;;
        commonvoice|kathbath|mls|fleurs|indicvoices)
            corpus_var=${1^^}  # its path's name in db.sh: COMMONVOICE, KATHBATH, MLS, FLEURS or INDICVOICES
            if [ -z "${!corpus_var:-}" ] || [ ! -d "${!corpus_var}" ]; then
                log "--corpus $1: ${corpus_var}='${!corpus_var:-}' in db.sh is not a directory; set ${corpus_var} in db.sh (or the environment) to where the corpus is extracted"
                exit 1
            fi
            args=(local/prepare_$1.py --corpus_dir "${!corpus_var}" --out_dir "$2" --nj "${nj}") ;;
        *) log "unknown --corpus $1 (tts|commonvoice|kathbath|mls|fleurs|indicvoices)"; exit 1 ;;
    esac
    ${train_cmd} "${expdir}/log/data_prep_$1.log" python "${args[@]}"
    ${train_cmd} "${expdir}/log/validate_data_$1.log" python -m espnet_ext.bin.validate_data_dir "$2"/*_*/
}

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    marker=${datadir}/.done_${corpus// /_}_${lang}
    if done_or_force "${marker}"; then
        log "stage 1: data already prepared (${marker}); --force true to redo"
    elif ! ${mixed}; then
        log "stage 1: data preparation (${corpus}) -> ${datadir}/ (log: ${expdir}/log/data_prep_${corpus}.log)"
        prepare_corpus "${corpus}" "${datadir}"
        touch "${marker}"
    else
        for c in "${corpora[@]}"; do
            [ "${c}" = tts ] && { log "--corpus \"${corpus}\": only real corpora are mixed (tts is synthetic)"; exit 1; }
            if done_or_force "${datadir}/${c}/.done"; then
                log "stage 1: ${c} already prepared (${datadir}/${c}/.done)"
            else
                log "stage 1: data preparation (${c}) -> ${datadir}/${c}/ (log: ${expdir}/log/data_prep_${c}.log)"
                prepare_corpus "${c}" "${datadir}/${c}"
                touch "${datadir}/${c}/.done"
            fi
        done
        log "stage 1: mixing ${corpus} -> ${datadir}/ (log: ${expdir}/log/mix_corpora.log)"
        ${train_cmd} "${expdir}/log/mix_corpora.log" python local/mix_corpora.py --out_dir "${datadir}" \
            --corpora "${corpora[@]}" --langs $(python -m espnet_ext.bin.recipe_info langs --lang "${lang}") \
            ${mix_ratio:+--mix_ratio "${mix_ratio}"} ${mix_alpha:+--mix_alpha "${mix_alpha}"}
        ${train_cmd} "${expdir}/log/validate_data_mixed.log" \
            python -m espnet_ext.bin.validate_data_dir "${datadir}"/*_*/
        grep -h "train_.*: .* h" "${expdir}/log/mix_corpora.log" | sed 's/^.*INFO: /    /' || true
        touch "${marker}"
    fi
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ] && ${codeswitch}; then
    # test: the report's sets; dev: where the switch penalty is chosen and the tagger's epoch; train: the tagger's
    for split in test dev train; do
        marker=${datadir}/.done_codeswitch_${split}
        case ${split} in test) per_kind=${cs_per_kind} ;; dev) per_kind=20 ;; train) per_kind=${cs_train_per_kind} ;; esac
        if done_or_force "${marker}"; then
            log "stage 1: code-switched ${split} sets already built (${marker}); --force true to redo"
        else
            log "stage 1: code-switched ${split} sets -> ${datadir}/${split}_cs_* (log: ${expdir}/log/make_codeswitch_${split}.log)"
            ${train_cmd} "${expdir}/log/make_codeswitch_${split}.log" python local/make_codeswitch.py \
                --data_dir "${datadir}" --split "${split}" ${per_kind:+--per_kind "${per_kind}"}
            touch "${marker}"
        fi
    done
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "stage 2: reserved (features/stats); Whisper and OWSM compute log-mels on the fly: nothing to do"
fi

if [ -n "${grid}" ]; then  # stages 3-6 of every system of the grid, as job arrays; nothing else runs
    if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 3 ]; then
        log "stages 3-6 of the grid ${grid} through ${train_cmd} (task table, logs: ${expdir}/grid/)"
        python -m espnet_ext.bin.grid submit --grid "${grid}" --expdir "${expdir}" --datadir "${datadir}" \
            --cmd "${train_cmd}" --dry_run "${dry_run}"
    fi
    log "done"
    exit 0
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    if done_or_force "${train_exp}/${exported}/.done"; then
        log "stage 3: ${train_exp}/${exported} already trained; --force true reruns it (it resumes from its last checkpoint; delete the dir to start over)"
    else
        log "stage 3: ${finetune} training (${train_config}) on $(data_dir_of "${train_set:-train_${lang}}") -> ${train_exp} (log: ${train_exp}/log/train.log)"
        ${fit_cmd} --num-threads "${threads_alone}" "${train_exp}/log/train.log" \
            python -m espnet_ext.bin.train_lora --model "${model}" ${model_path:+--model_path "${model_path}"} \
                --train_dir "$(data_dir_of "${train_set:-train_${lang}}")" --valid_dir "$(data_dir_of "dev_${lang}")" \
                --exp_dir "${train_exp}" --config "${train_config}" --finetune "${finetune}" --ngpu "${ngpu}" \
                --resume true ${train_args}
        touch "${train_exp}/${exported}/.done"
    fi
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    heads=${lid_heads:-${lid_head}}
    marker=${train_exp}/lid/.done_${heads//,/_}_x${lid_members}
    if [ "${finetune}" = full ] || [ "${lang}" != all ]; then
        log "stage 4: nothing to route (--finetune ${finetune}, --lang ${lang}): no LID head to train"
    elif done_or_force "${marker}"; then
        log "stage 4: LID heads ${heads} already trained (${marker}); --force true to redo"
    else
        log "stage 4: LID heads ${heads} (x${lid_members} seeds) on the tap of ${train_exp}/adapters -> ${train_exp}/lid (log: ${train_exp}/lid/log/train_lid.log)"
        oos=$(data_dir_of test_oos)  # out-of-set languages (stage 1 of the tts corpus): their routing is reported
        train_lid_into "${train_exp}/lid" $([ -d "${oos}" ] && echo --oos_dir "${oos}") --heads "${heads}" \
            --members "${lid_members}"
        touch "${marker}"
        log "stage 4: LID heads (${train_exp}/lid/heads.md):"
        cat "${train_exp}/lid/heads.md"
    fi
    tagger_dir=${train_exp}/lid/tagger
    if ${codeswitch} && [ "${cs_lid_head}" = tagger ]; then
        if done_or_force "${tagger_dir}/.done"; then
            log "stage 4: LID frame tagger already trained (${tagger_dir}/.done); --force true to redo"
        else
            log "stage 4: LID frame tagger on ${datadir}/train_cs_* -> ${tagger_dir} (log: ${train_exp}/lid/log/train_tagger.log)"
            ${train_cmd} --num-threads "${threads_alone}" "${train_exp}/lid/log/train_tagger.log" \
                python -m espnet_ext.bin.train_tagger --model "${model}" ${model_path:+--model_path "${model_path}"} \
                    --adapter_dir "${train_exp}/adapters" --out_dir "${tagger_dir}" \
                    --train_dir "${datadir}"/train_cs_{inter,intra,rapid} --dev_dir "${datadir}"/dev_cs_{inter,intra,rapid}
            touch "${tagger_dir}/.done"
        fi
    fi
fi

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    # the trained system on the unseen-voice dev set that early stopping watched, as asr.sh decodes its
    # valid set in the inference stage: stage 3 stays training only
    if ${decodes_trained}; then
        decode_set "$(data_dir_of "dev_${lang}")" "${dev_decode_dir}" oracle
    fi
    for routing in ${routings}; do
        for dset in ${test_sets}; do
            decode_set "$(data_dir_of "${dset}")" "$(decode_dir_of "${dset}" "${routing}")" "${routing}"
        done
    done
    sets=$(cs_sets)
    # what the segments were found with: another head, penalty or minimum finds them again
    cs_inputs="$(lid_head_sum "${cs_lid_head}") ${switch_penalty} ${min_segment}"
    if [ -n "${sets}" ] && ! { done_or_force "${cs_segments}/.done" && [ "$(cat "${cs_segments}/.done")" = "${cs_inputs}" ]; }; then
        log "stage 5: language segments of ${sets//$'\n'/ } (LID head ${cs_lid_head}) -> ${cs_segments}"
        ${train_cmd} --num-threads "${threads_alone}" "${cs_segments}/log/codeswitch_lid.log" \
            python -m espnet_ext.bin.codeswitch_lid --model "${model}" ${model_path:+--model_path "${model_path}"} \
                --adapter_dir "${train_exp}/adapters" --lid_dir "${train_exp}/lid/${cs_lid_head}" \
                --data_dir $(for d in ${sets}; do data_dir_of "${d}"; done) --out_dir "${cs_segments}" \
                ${switch_penalty:+--penalties "${switch_penalty}"} ${min_segment:+--min_segments "${min_segment}"}
        echo "${cs_inputs}" > "${cs_segments}/.done"
    fi
    for dset in ${sets}; do
        for variant in ${cs_variants}; do cs_decode "${dset}" "${variant}"; done
    done
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    for routing in ${routings}; do
        for dset in ${test_sets}; do
            score_set "$(decode_dir_of "${dset}" "${routing}")" "$(data_dir_of "${dset}")"
        done
    done
    for dset in $(cs_sets); do
        for variant in ${cs_variants}; do score_set "${train_exp}/decode_${dset}_${variant}" "$(data_dir_of "${dset}")"; done
    done
    if ${decodes_trained}; then
        score_set "${dev_decode_dir}" "$(data_dir_of "dev_${lang}")"
        log "stage 6: dev WER/CER of ${train_exp} (${dev_decode_dir}/result.txt):"
        sed -n '/^lang /,/^all /p' "${dev_decode_dir}/result.txt"
    fi
    python local/show_results.py "${expdir}" --output "${expdir}/RESULTS.md"
    log "stage 6: results (${expdir}/RESULTS.md):"
    cat "${expdir}/RESULTS.md"
fi

study_system() {  # options of another system (tag, rank, training options): its stages 3, 5 (oracle) and 6
    local common=(--model "${model}" ${model_path:+--model_path "${model_path}"} --datadir "${datadir}"
                  --expdir "${expdir}" --nj "${nj}" --ngpu "${ngpu}" ${cmd:+--cmd "${cmd}"} --lang "${lang}"
                  --force "${force}" --test_sets "${test_sets}" ${threads:+--threads "${threads}"}
                  ${mail_type:+--mail_type "${mail_type}"})
    "$0" "${common[@]}" --stage 3 --stop_stage 3 "$@"
    "$0" "${common[@]}" --stage 5 --stop_stage 6 --routings oracle "$@"
}
run_study() {
    case $1 in
        seeds) for seed in 1 2; do
                   study_system --lora_rank "${lora_rank}" --train_config "${train_config}" --tag "${tag:+${tag}_}seed${seed}" \
                       --train_args "--seed ${seed} ${train_args}"
               done ;;
        ranks) for rank in 8 16 32 64; do
                   [ "${rank}" = "${lora_rank}" ] || study_system --lora_rank "${rank}" ${tag:+--tag "${tag}"} --train_args "${train_args}"
               done ;;
        layers|lexical) ;;  # run inside the analysis below (--importance_per_language, --lexical_per_language)
        phonetic) [ -f "${datadir}/syllables/wav.scp" ] || python local/make_syllable_set.py --out_dir "${datadir}/syllables" ;;
        transfer) for src in $(python -m espnet_ext.bin.recipe_info langs --lang "${lang}"); do
                      for tgt in $(python -m espnet_ext.bin.recipe_info langs --lang "${lang}"); do
                          [ "${src}" = "${tgt}" ] && continue  # the diagonal is the oracle decode of test_all
                          decode_set "$(data_dir_of "test_${tgt}")" "${train_exp}/decode_test_${tgt}_adapter_${src}" oracle --adapter "${src}"
                          score_set "${train_exp}/decode_test_${tgt}_adapter_${src}" "$(data_dir_of "test_${tgt}")"
                      done
                  done ;;
        fewshot) local pairs=${fewshot_pairs} src tgt
                 if [ "${pairs}" = full ]; then  # every ordered pair of the adapter languages
                     pairs=$(for src in $(python -m espnet_ext.bin.recipe_info langs --lang all); do
                                 for tgt in $(python -m espnet_ext.bin.recipe_info langs --lang all); do
                                     if [ "${src}" != "${tgt}" ]; then echo "${src}:${tgt}"; fi; done; done)
                 fi
                 for pair in ${pairs}; do
                     src=${pair%%:*} tgt=${pair##*:}
                     study_system --lang "${src}" --lora_rank "${lora_rank}" --train_config "${train_config}" \
                         --test_sets "test_${src}" --train_args "${train_args}"
                     for n in ${fewshot_sizes}; do
                         python local/subset_data_dir.py "$(data_dir_of "train_${tgt}")" "${n}" "${datadir}/train_${tgt}_n${n}"
                         for init in scratch "from_${src}"; do
                             init_dir=${expdir}/${model}_${src}_r${lora_rank}/adapters/${src}
                             study_system --lang "${tgt}" --lora_rank "${lora_rank}" --train_config "${train_config}" \
                                 --test_sets "test_${tgt}" --train_set "${datadir}/train_${tgt}_n${n}" --tag "n${n}_${init}" \
                                 --train_args "${train_args} ${fewshot_steps} $([ "${init}" = scratch ] || echo --init_adapter_dir "${init_dir}")"
                         done
                     done
                 done ;;
        robustness) local q=test_q sets evals routing epochs variant out
                    if [ ! -f "${datadir}/${q}/.degraded" ]; then
                        log "study robustness: ${datadir}/${q} and its copies (log: ${expdir}/log/make_degraded_${q}.log)"
                        ${train_cmd} "${expdir}/log/subset_${q}.log" python local/subset_data_dir.py --per_language \
                            "$(data_dir_of "test_${lang}")" "${robustness_per_language}" "${datadir}/${q}"
                        ${train_cmd} "${expdir}/log/make_degraded_${q}.log" python local/make_degraded.py \
                            --src "${datadir}/${q}" --nj "${nj}" --conditions ${robustness_conditions}
                        touch "${datadir}/${q}/.degraded"
                    fi
                    sets="${q}$(for c in ${robustness_conditions}; do echo -n " ${q}_${c}"; done)"
                    for dset in ${sets}; do  # the zero-shot base and this exp's adapters on every copy
                        for routing in none oracle; do
                            decode_set "$(data_dir_of "${dset}")" "$(decode_dir_of "${dset}" "${routing}")" "${routing}"
                            score_set "$(decode_dir_of "${dset}" "${routing}")" "$(data_dir_of "${dset}")"
                        done
                    done
                    evals=$(for dset in ${sets}; do data_dir_of "${dset}"; done)
                    for epochs in ${robustness_lid_epochs}; do  # LID heads on this bank's tap, sharing stage 4's frames
                        for variant in clean channels; do
                            out=${train_exp}/lid_${variant}_e${epochs}
                            [ -f "${out}/.done" ] && continue
                            log "study robustness: LID head ${lid_head}, ${variant}, ${epochs} epochs -> ${out} (log: ${out}/log/train_lid.log)"
                            train_lid_into "${out}" --eval_dir ${evals} --heads "${lid_head}" --members "${lid_members}" --epochs "${epochs}" \
                                --feats_dir "${train_exp}/lid/feats" $([ "${variant}" = clean ] || echo --channels ${robustness_lid_channels})
                            touch "${out}/.done"
                        done
                    done
                    for epochs in ${robustness_epochs}; do  # the adapters trained with the channels
                        study_system --lora_rank "${lora_rank}" --train_config "${robustness_config}" \
                            --tag "${tag:+${tag}_}channels_e${epochs}" --test_sets "${sets}" \
                            --train_args "${train_args} --max_epoch ${epochs}"
                    done ;;
        *) log "--studies: unknown study '$1' (seeds, ranks, layers, phonetic, lexical, transfer, fewshot, robustness)"; exit 1 ;;
    esac
}

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    for study in ${studies//,/ }; do
        log "stage 7: study ${study} (log: ${expdir}/report/log/study_${study}.log)"
        mkdir -p "${expdir}/report/log"
        set +e  # a subshell outside any || or if: set -e holds inside it, and its status is read here
        ( set -e; run_study "${study}" ) > "${expdir}/report/log/study_${study}.log" 2>&1
        status=$?
        set -e
        if [ "${status}" -ne 0 ]; then
            log "stage 7: study ${study} failed; the end of ${expdir}/report/log/study_${study}.log:"
            tail -5 "${expdir}/report/log/study_${study}.log"
            exit 1
        fi
    done
    if [ ! -d "${train_exp}/adapters" ]; then
        log "stage 7: the analysis reads a trained LoRA bank and ${train_exp}/adapters is missing (--finetune ${finetune}; run stage 3 with --finetune lora): skipped"
    else
        log "stage 7: analysis of ${train_exp}, report of every result under ${expdir} -> ${expdir}/report (log: ${expdir}/report/log/analyze.log)"
        ${train_cmd} --num-threads "${threads_alone}" "${expdir}/report/log/analyze.log" \
            python -m espnet_ext.bin.analyze --model "${model}" ${model_path:+--model_path "${model_path}"} \
                --exp_root "${expdir}" --exp_dir "${train_exp}" --report_dir "${expdir}/report" \
                --probe_data "$(data_dir_of "dev_${lang}")" --probe_per_language "${probe_per_language}" \
                --force "${force}" \
                $([[ ",${studies}," == *,layers,* ]] && echo --importance_per_language "${importance_per_language}") \
                $([[ ",${studies}," == *,phonetic,* ]] && echo --phonetic_data "${datadir}/syllables") \
                $([[ ",${studies}," == *,lexical,* ]] && echo --lexical_per_language "${lexical_per_language}") ${analysis_args}
        log "stage 7: ${expdir}/report/README.md, index.html (one page, images inside), slides.pdf"
    fi
fi
log "done"
