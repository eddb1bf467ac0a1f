#!/usr/bin/env bash
# test_cli.sh: the programs' command lines: exit codes, file:line errors,
# masked secrets, --set and COUPOND_CONFIG. Needs no servers.
# usage: test_cli.sh BUILD_DIR SOURCE_DIR
set -u
build=${1:?build dir}
src=${2:?source dir}
coupond=$build/coupond
ctl=$build/couponctl
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# expect NAME WANT_RC WANT_SUBSTRING -- COMMAND...: runs, checks rc and output.
expect() {
    local name=$1 want_rc=$2 want=$3 out rc
    shift 4
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want_rc" ]; then
        bad "$name: exit $rc, want $want_rc; output: $out"
    elif [[ "$out" != *"$want"* ]]; then
        bad "$name: output lacks '$want': $out"
    else
        ok
    fi
}

# A configuration of its own, beside its secrets.
mkdir -p "$tmp/conf" "$tmp/secrets"
printf 'pg-password-for-cli-test' > "$tmp/secrets/pg.password"
printf 'amqp-password-for-cli-test' > "$tmp/secrets/amqp.password"
printf '0123456789abcdef0123456789abcdef' > "$tmp/secrets/k1.key"
chmod 600 "$tmp"/secrets/*
echo "127.0.0.1:9" > "$tmp/bootstrap"
sed -e 's|file:../.run/secrets/|file:../secrets/|; s|file:../.run/kafka/bootstrap|file:../bootstrap|' \
    "$src/conf/coupond.cfg" > "$tmp/conf/coupond.cfg"
cfg=$tmp/conf/coupond.cfg

expect "check ok" 0 "# configuration OK" -- "$coupond" --config "$cfg" --check
expect "check masks store password" 0 'store.password = "********";' -- "$coupond" --config "$cfg" --check
out=$("$coupond" --config "$cfg" --check 2>&1)
for secret in pg-password-for-cli-test amqp-password-for-cli-test 0123456789abcdef; do
    if [[ "$out" == *"$secret"* ]]; then bad "check printed a secret"; else ok; fi
done
expect "COUPOND_CONFIG" 0 "# configuration OK" -- env COUPOND_CONFIG="$cfg" "$coupond" --check
expect "no config" 2 "no configuration: pass --config FILE or set COUPOND_CONFIG" -- env -u COUPOND_CONFIG "$coupond" --check
expect "missing config file" 2 "cannot read the configuration" -- "$coupond" --config "$tmp/none.cfg" --check
expect "no role" 2 "usage:" -- "$coupond" --config "$cfg"
expect "bad role" 2 "usage:" -- "$coupond" --config "$cfg" --role x
expect "help" 0 "--role l|w" -- "$coupond" --help

# A broken setting in the file: file:line and exit 2.
sed 's/delay_ms = 10000;/delay_ms = "ten seconds";/' "$cfg" > "$tmp/conf/broken.cfg"
line=$(grep -n 'delay_ms = "ten seconds"' "$tmp/conf/broken.cfg" | cut -d: -f1)
expect "broken setting" 2 "broken.cfg:$line: lanes.w.delay_ms: expected an integer" -- "$coupond" --config "$tmp/conf/broken.cfg" --check
sed 's/refund_after_s = 1800;/refund_after_s = 5;/' "$cfg" > "$tmp/conf/short.cfg"
line=$(grep -n 'refund_after_s = 5' "$tmp/conf/short.cfg" | cut -d: -f1)
expect "combination" 2 "short.cfg:$line: issue.refund_after_s: the refund deadline" -- "$coupond" --config "$tmp/conf/short.cfg" --check
printf 'cluster = "x"\nstore: {\n' > "$tmp/conf/syntax.cfg"
expect "syntax error" 2 "syntax.cfg:" -- "$coupond" --config "$tmp/conf/syntax.cfg" --check
chmod 644 "$tmp/secrets/k1.key"
expect "readable secret" 2 "is accessible by group or others (mode 0644); run: chmod 600" -- "$coupond" --config "$cfg" --check
chmod 600 "$tmp/secrets/k1.key"

expect "set override" 0 "1234" -- "$ctl" --config "$cfg" --set lanes.w.delay_ms=1234 config get lanes.w.delay_ms
expect "set bad" 2 "--set lanes.w.delay_ms: expected an integer" -- "$ctl" --config "$cfg" --set lanes.w.delay_ms=x config get lanes.w.delay_ms
expect "config get string" 0 '"coupond.w.delay"' -- "$ctl" --config "$cfg" config get lanes.w.amqp.delay_queue
expect "config get list" 0 "[ 1000, 5000, 30000, 120000, 600000 ]" -- "$ctl" --config "$cfg" config get issue.retry_delays_ms
expect "config get secret masked" 0 '"********"' -- "$ctl" --config "$cfg" config get lanes.w.amqp.password
expect "config get keys masked" 0 '( { id = "k1"; secret = "********"; } )' -- "$ctl" --config "$cfg" config get security.keys
expect "config get url password masked" 0 '"amqp://u:****@h:1/"' -- "$ctl" --config "$cfg" --set lanes.w.amqp.url=amqp://u:pw@h:1/ config get lanes.w.amqp.url
expect "config get unknown" 2 "unknown setting 'no.such'" -- "$ctl" --config "$cfg" config get no.such
expect "unknown command" 2 "unknown command 'frobnicate'" -- "$ctl" --config "$cfg" frobnicate
expect "ctl help" 0 "db migrate" -- "$ctl" --help
expect "deal set usage" 2 "--currency: expected three upper-case letters" -- "$ctl" --config "$cfg" deal set 1 --price-cents 100 --currency usd
expect "status usage" 2 "status needs one ORDER_ID" -- "$ctl" --config "$cfg" status abc
# Nothing listens on port 9: the store is unavailable, exit 3.
expect "store down" 3 "store unavailable" -- "$ctl" --config "$cfg" --set "store.conninfo=host=127.0.0.1 port=9 connect_timeout=2" status 1

# --help and -h on every command, subcommand and group: its usage, exit 0,
# without a configuration. The commands are the ones couponctl --help lists.
commands=()
while IFS= read -r c; do commands+=("$c"); done < <(
    "$ctl" --help | sed -n 's/^  \([a-z][a-z]*\( [a-z][a-z]*\)\{0,1\}\)\( .*\)\{0,1\}$/\1/p')
if [ "${#commands[@]}" -ge 18 ]; then ok; else bad "couponctl --help lists ${#commands[@]} commands: ${commands[*]}"; fi
groups=()
for c in "${commands[@]}"; do
    read -ra w <<<"$c"
    expect "$c --help" 0 "usage: couponctl [--config FILE] [--set PATH=VALUE]... $c" -- env -u COUPOND_CONFIG "$ctl" "${w[@]}" --help
    expect "$c -h" 0 "usage: couponctl [--config FILE] [--set PATH=VALUE]... $c" -- env -u COUPOND_CONFIG "$ctl" "${w[@]}" -h
    # A wrong option names the command whose usage to read.
    expect "$c wrong option" 2 "see 'couponctl $c --help'" -- "$ctl" --config "$cfg" "${w[@]}" --no-such-option
    if [ "${#w[@]}" -eq 2 ] && [[ " ${groups[*]} " != *" ${w[0]} "* ]]; then groups+=("${w[0]}"); fi
done
for g in "${groups[@]}"; do
    expect "$g --help" 0 "usage: couponctl [--config FILE] [--set PATH=VALUE]... $g COMMAND" -- env -u COUPOND_CONFIG "$ctl" "$g" --help
    expect "$g -h" 0 "usage: couponctl [--config FILE] [--set PATH=VALUE]... $g COMMAND" -- env -u COUPOND_CONFIG "$ctl" "$g" -h
    expect "$g alone" 2 "couponctl: $g: which command?" -- "$ctl" --config "$cfg" "$g"
    expect "$g unknown" 2 "unknown command '$g frob'" -- "$ctl" --config "$cfg" "$g" frob
done
expect "ctl -h" 0 "dlq replay" -- "$ctl" -h
expect "coupond -h" 0 "--role l|w" -- "$coupond" -h
expect "help after --" 2 "" -- "$ctl" --config "$cfg" config get -- --help
expect "dlq purge needs --resolved" 2 "needs --resolved" -- "$ctl" --config "$cfg" dlq purge --older-than 7d
expect "dlq purge bad duration" 2 "--older-than: expected a duration" -- "$ctl" --config "$cfg" dlq purge --resolved --older-than soon
expect "order refund needs a note" 2 "needs --note TEXT" -- "$ctl" --config "$cfg" order refund 4201
expect "refunds summary --by" 2 "--by: expected day, reason or currency" -- "$ctl" --config "$cfg" refunds summary --by week

# Every command has a man page entry and a bash completion, and both are
# installed by cmake --install.
man=$src/docs/man/couponctl.1
completion=$src/deploy/bash-completion/couponctl
for c in "${commands[@]}"; do
    if grep -Fqx ".SS \"$c\"" "$man"; then ok; else bad "man page: no entry for '$c'"; fi
done
# What bash offers after "couponctl" (or the group) for each command's last
# word, and after the whole command for "--": one shell runs them all.
# Prints "COMMAND<TAB>word-offered<TAB>help-offered" per command.
offered=$(bash -c '
    source "$1"
    shift
    for c in "$@"; do
        read -ra w <<<"$c"
        COMP_WORDS=(couponctl "${w[@]:0:${#w[@]}-1}" "")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        _couponctl
        word=no
        for r in "${COMPREPLY[@]}"; do [[ $r == "${w[-1]}" ]] && word=yes; done
        COMP_WORDS=(couponctl "${w[@]}" --)
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        _couponctl
        help=no
        for r in "${COMPREPLY[@]}"; do [[ $r == --help ]] && help=yes; done
        printf "%s\t%s\t%s\n" "$c" "$word" "$help"
    done' _ "$completion" "${commands[@]}")
for c in "${commands[@]}"; do
    if grep -qxF "$c"$'\t'yes$'\t'yes <<<"$offered"; then ok; else bad "completion of '$c': $(grep -F "$c"$'\t' <<<"$offered")"; fi
done
if grep -q '^\.TH COUPOND 1' "$src/docs/man/coupond.1"; then ok; else bad "no coupond man page"; fi
if command -v groff >/dev/null; then
    for page in "$man" "$src/docs/man/coupond.1"; do
        warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
        if [ -z "$warn" ]; then ok; else bad "$(basename "$page"): groff warns: $warn"; fi
    done
fi
if cmake --install "$build" --prefix "$tmp/inst" >/dev/null 2>&1; then
    for f in share/man/man1/couponctl.1 share/man/man1/coupond.1 \
             share/bash-completion/completions/couponctl share/bash-completion/completions/coupond; do
        if [ -f "$tmp/inst/$f" ]; then ok; else bad "cmake --install did not install $f"; fi
    done
else
    bad "cmake --install failed"
fi

echo "test_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
