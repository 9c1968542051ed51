# tm_common.sh -- sourced by every nebtwist transfer script (drivers/tm/remotes/<set>/<op>).
#
# POSIX sh (dash is fine). Follows OpenNebula 3.4 src/mad/sh/scripts_common.sh
# (log, error_message, exec_and_log) and src/tm_mad/tm_common.sh (arg_host,
# arg_path, ssh_make_path). A script sources it with
#
#     . "${TM_COMMON:-$(dirname "$0")/../tm_common.sh}"
#
# (drivers/tm/exec exports TM_COMMON). Everything here is safe under `set -e`.
#
# Output conventions, read by drivers/tm/exec:
#   log MSG            "INFO: <script>: MSG" on stderr   -> LOG I
#   log_error MSG      "ERROR: <script>: MSG" on stderr  -> LOG E
#   error_message MSG  MSG between the ERROR MESSAGE markers on stderr
#                      -> the TRANSFER FAILURE message
#
# ssh and scp are the ones found on PATH; every call shares one connection per
# host (ControlMaster=auto, ControlPersist=60) through sockets in
# ${TMPDIR:-/tmp}/nebtwist-tm-<uid> (made 0700; /tmp is used when TMPDIR is
# long or unusual, since a socket path must stay short). Set
# NEBTWIST_TM_SHARING=no to open one connection per command instead.
# Commands that may reach a host never leave ssh's stderr on the script's own
# stderr (a persisting master would keep it open): it goes to a file first.

SCRIPT_NAME=${0##*/}

# -- logging ------------------------------------------------------------------

log() {
    echo "INFO: $SCRIPT_NAME: $*" >&2
}

log_error() {
    echo "ERROR: $SCRIPT_NAME: $*" >&2
}

# error_message MSG: the message the driver sends with TRANSFER FAILURE.
error_message() {
    {
        echo "ERROR MESSAGE --8<------"
        echo "$*"
        echo "ERROR MESSAGE ------>8--"
    } >&2
}

# fail MSG: error_message MSG and exit 1.
fail() {
    log_error "$*"
    error_message "$*"
    exit 1
}

# usage TEXT: fail with "usage: <script> TEXT".
usage() {
    fail "usage: $SCRIPT_NAME $*"
}

# -- quoting and arguments ------------------------------------------------------

# q WORD: WORD quoted for sh ('...'), to build command strings.
q() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# arg_host HOST:PATH -> HOST ("" when there is no "host:" part).
arg_host() {
    case $1 in
    /*) echo "" ;;
    *:*) echo "${1%%:*}" ;;
    *) echo "" ;;
    esac
}

# arg_path HOST:PATH -> PATH, with repeated and trailing slashes removed.
arg_path() {
    case $1 in
    /*) _p=$1 ;;
    *:*) _p=${1#*:} ;;
    *) _p=$1 ;;
    esac
    _p=$(printf '%s\n' "$_p" | sed -e 's#//*#/#g' -e 's#\(.\)/$#\1#')
    echo "$_p"
}

# The front-end's own name, as the core writes it (Python's socket.gethostname()).
TM_HOSTNAME=$(hostname 2>/dev/null || uname -n)

# is_local HOST: true for the front-end itself ("", localhost, 127.0.0.1, ::1
# or the output of `hostname`); commands then run here, no ssh.
is_local() {
    case $1 in
    "" | localhost | localhost.localdomain | 127.0.0.1 | ::1 | "$TM_HOSTNAME") return 0 ;;
    esac
    return 1
}

# same_host A B: A and B name the same machine (equal, or both the front-end).
same_host() {
    [ "$1" = "$2" ] && return 0
    is_local "$1" && is_local "$2" && return 0
    return 1
}

# check_host HOST: refuse host names ssh would read as options.
check_host() {
    case $1 in
    -* | *[[:space:]]*) fail "invalid host name '$1'" ;;
    esac
}

# check_path PATH WHAT: refuse an empty or relative path.
check_path() {
    case $1 in
    /*) ;;
    "") fail "empty $2 path" ;;
    *) fail "$2 path '$1' is not absolute" ;;
    esac
}

# -- ssh ------------------------------------------------------------------------

_tm_control_dir() {
    _d=${TMPDIR:-/tmp}
    case $_d in
    /*) ;;
    *) _d=/tmp ;;
    esac
    case $_d in
    *[!A-Za-z0-9_./-]*) _d=/tmp ;;
    esac
    [ ${#_d} -le 48 ] || _d=/tmp
    _d="${_d%/}/nebtwist-tm-$(id -u)"
    if [ ! -d "$_d" ]; then
        (umask 077 && mkdir -p "$_d") 2>/dev/null || true
    fi
    # Only a folder we own, and nobody else can enter.
    if [ -d "$_d" ] && [ -O "$_d" ] && [ ! -L "$_d" ]; then
        chmod 700 "$_d" 2>/dev/null || true
        echo "$_d"
    fi
}

SSH_OPTIONS="-o BatchMode=yes"
if [ "${NEBTWIST_TM_SHARING:-yes}" != no ]; then
    TM_CONTROL_DIR=$(_tm_control_dir)
    if [ -n "$TM_CONTROL_DIR" ]; then
        SSH_OPTIONS="-o ControlMaster=auto -o ControlPath=$TM_CONTROL_DIR/%C -o ControlPersist=60 $SSH_OPTIONS"
    fi
fi
SSH="ssh $SSH_OPTIONS"
SCP="scp -q $SSH_OPTIONS"

# -- running commands --------------------------------------------------------------

_tm_tmp() {
    mktemp "${TMPDIR:-/tmp}/nebtwist-tm.XXXXXX"
}

# _tm_oneline FILE: the file's non-empty lines joined with spaces.
_tm_oneline() {
    sed -e '/^[[:space:]]*$/d' "$1" | tr '\n' ' ' | sed -e 's/ *$//'
}

# exec_and_log CMD [MSG]: run the sh command string CMD (stdout discarded).
# On failure: log the command and its stderr, error_message "MSG: <stderr>"
# (or "Error executing CMD: <stderr>"), and exit with its status.
exec_and_log() {
    _tm_err=$(_tm_tmp)
    _tm_rc=0
    sh -c "$1" </dev/null >/dev/null 2>"$_tm_err" || _tm_rc=$?
    if [ "$_tm_rc" -ne 0 ]; then
        _tm_text=$(_tm_oneline "$_tm_err")
        rm -f "$_tm_err"
        log_error "Command \"$1\" failed (exit $_tm_rc): $_tm_text"
        _tm_msg=${2:-Error executing $1}
        [ -n "$_tm_text" ] && _tm_msg="$_tm_msg: $_tm_text"
        error_message "$_tm_msg"
        exit "$_tm_rc"
    fi
    rm -f "$_tm_err"
}

# remote_cmd HOST CMD: the command string running CMD on HOST (sh -c CMD
# here when HOST is the front-end, else through $SSH).
remote_cmd() {
    if is_local "$1"; then
        echo "sh -c $(q "$2")"
    else
        check_host "$1"
        echo "$SSH $(q "$1") $(q "$2")"
    fi
}

# ssh_exec_and_log HOST CMD [MSG]: exec_and_log CMD on HOST.
ssh_exec_and_log() {
    exec_and_log "$(remote_cmd "$1" "$2")" "${3:-Error executing $2 on $1}"
}

# ssh_exec_output HOST CMD [MSG]: run CMD on HOST, print its stdout; fail like
# exec_and_log.
ssh_exec_output() {
    _tm_err=$(_tm_tmp)
    _tm_out=$(_tm_tmp)
    _tm_rc=0
    sh -c "$(remote_cmd "$1" "$2")" </dev/null >"$_tm_out" 2>"$_tm_err" || _tm_rc=$?
    if [ "$_tm_rc" -ne 0 ]; then
        _tm_text=$(_tm_oneline "$_tm_err")
        rm -f "$_tm_err" "$_tm_out"
        log_error "Command \"$2\" on $1 failed (exit $_tm_rc): $_tm_text"
        _tm_msg=${3:-Error executing $2 on $1}
        [ -n "$_tm_text" ] && _tm_msg="$_tm_msg: $_tm_text"
        error_message "$_tm_msg"
        exit "$_tm_rc"
    fi
    cat "$_tm_out"
    rm -f "$_tm_err" "$_tm_out"
}

# ssh_make_path HOST DIR: mkdir -p DIR on HOST.
ssh_make_path() {
    ssh_exec_and_log "$1" "mkdir -p $(q "$2")" "Error creating directory $2 at ${1:-front-end}"
}

# scp_spec HOST PATH: an scp operand (a plain path for the front-end).
scp_spec() {
    if is_local "$1"; then
        echo "$(q "$2")"
    else
        check_host "$1"
        echo "$(q "$1:$2")"
    fi
}

# copy_file SRC_HOST SRC_PATH DST_HOST DST_PATH [MSG]: copy a file (or, with
# scp -r, a folder) between any two of front-end and hosts.
copy_file() {
    _tm_msg=${5:-Error copying ${1:+$1:}$2 to ${3:+$3:}$4}
    if is_local "$1" && is_local "$3"; then
        exec_and_log "cp -R -- $(q "$2") $(q "$4")" "$_tm_msg"
    elif is_local "$1" || is_local "$3"; then
        exec_and_log "$SCP -r $(scp_spec "$1" "$2") $(scp_spec "$3" "$4")" "$_tm_msg"
    else
        exec_and_log "$SCP -3 -r $(scp_spec "$1" "$2") $(scp_spec "$3" "$4")" "$_tm_msg"
    fi
}

# tar_pipe SRC_HOST SRC_DIR DST_HOST DST_DIR [MSG]: copy the folder SRC_DIR on
# SRC_HOST to DST_DIR on DST_HOST (replaced whole) with
#   tar -C SRC_DIR -cf - . | (mkdir DST_DIR.part && tar -C DST_DIR.part -xf - && mv)
# through the front-end (tar runs locally at an end that is the front-end).
# The source is kept.
tar_pipe() {
    _tm_msg=${5:-Error copying ${1:+$1:}$2 to ${3:+$3:}$4}
    _tm_part="$4.part"
    _tm_parent=$(dirname "$4")
    _tm_src=$(remote_cmd "$1" "tar -C $(q "$2") -cf - .")
    _tm_dst=$(remote_cmd "$3" "rm -rf $(q "$_tm_part") && mkdir -p $(q "$_tm_parent") && mkdir $(q "$_tm_part") && tar -C $(q "$_tm_part") -xf - && rm -rf $(q "$4") && mv $(q "$_tm_part") $(q "$4")")
    _tm_rcf=$(_tm_tmp)
    # dash has no pipefail: the left side writes its status to a file.
    exec_and_log "{ $_tm_src; echo \$? >$(q "$_tm_rcf"); } | $_tm_dst && [ \"\$(cat $(q "$_tm_rcf"))\" = 0 ]" "$_tm_msg"
    rm -f "$_tm_rcf"
}

# -- operations shared by several sets ----------------------------------------------

# check_size SIZE: a whole number of MB.
check_size() {
    case $1 in
    "" | *[!0-9]*) fail "invalid size '$1' (MB expected)" ;;
    esac
}

# tm_mkswap SIZE HOST PATH: a SIZE MB swap file at PATH on HOST.
tm_mkswap() {
    check_size "$1"
    check_path "$3" destination
    log "Creating ${1}MB swap image in ${2:+$2:}$3"
    # One round trip: the folder is made by the same command.
    ssh_exec_and_log "$2" "mkdir -p $(q "$(dirname "$3")") && rm -f $(q "$3") && truncate -s $1M $(q "$3") && mkswap -q $(q "$3")" \
        "Error creating swap image ${2:+$2:}$3"
}

# tm_mkimage SIZE FORMAT HOST PATH: a SIZE MB image at PATH on HOST. FORMAT is
# a qemu-img format (qcow2, qed, vmdk, vdi, vpc, vhdx: qemu-img create), raw
# (an empty sparse file), swap, or a file system type (a raw file made with
# mkfs -t FORMAT; -F for ext2/3/4, -f for xfs/btrfs).
tm_mkimage() {
    check_size "$1"
    check_path "$4" destination
    case $2 in
    "" | *[!A-Za-z0-9_.]*) fail "invalid image format '$2'" ;;
    esac
    _tm_fmt=$(echo "$2" | tr 'A-Z' 'a-z')
    _tm_p=$(q "$4")
    case $_tm_fmt in
    qcow2 | qed | vmdk | vdi | vpc | vhdx)
        _tm_cmd="rm -f $_tm_p && qemu-img create -q -f $_tm_fmt $_tm_p $1M" ;;
    raw)
        _tm_cmd="rm -f $_tm_p && truncate -s $1M $_tm_p" ;;
    swap)
        _tm_cmd="rm -f $_tm_p && truncate -s $1M $_tm_p && mkswap -q $_tm_p" ;;
    ext2 | ext3 | ext4)
        _tm_cmd="rm -f $_tm_p && truncate -s $1M $_tm_p && mkfs -t $_tm_fmt -q -F $_tm_p" ;;
    xfs | btrfs)
        _tm_cmd="rm -f $_tm_p && truncate -s $1M $_tm_p && mkfs -t $_tm_fmt -q -f $_tm_p" ;;
    *)
        _tm_cmd="rm -f $_tm_p && truncate -s $1M $_tm_p && mkfs -t $_tm_fmt $_tm_p" ;;
    esac
    log "Creating ${1}MB $_tm_fmt image in ${3:+$3:}$4"
    ssh_exec_and_log "$3" "mkdir -p $(q "$(dirname "$4")") && $_tm_cmd" "Error creating $_tm_fmt image ${3:+$3:}$4"
}

# download_cmd URL PATH: a sh command string fetching URL into PATH (curl,
# else wget; through PATH.part, renamed when complete).
download_cmd() {
    _tm_part=$(q "$2.part")
    echo "if command -v curl >/dev/null 2>&1; then curl -fsSL -o $_tm_part $(q "$1"); else wget -q -O $_tm_part $(q "$1"); fi && mv -f $_tm_part $(q "$2") || { rm -f $_tm_part; exit 1; }"
}

# context_iso CONTEXT_SH [FILES...]: set TM_CONTEXT_ISO to the context image
# to copy: context.iso beside CONTEXT_SH if the core made it, else one built
# here (genisoimage or mkisofs -J -R, volume CONTEXT) from CONTEXT_SH and
# FILES, in a temporary folder the caller removes with context_cleanup.
# Call it directly, not in $(...).
TM_CONTEXT_TMP=""
TM_CONTEXT_ISO=""
context_iso() {
    _tm_ctx=$1
    shift
    check_path "$_tm_ctx" context.sh
    _tm_iso="$(dirname "$_tm_ctx")/context.iso"
    if [ -f "$_tm_iso" ]; then
        TM_CONTEXT_ISO=$_tm_iso
        return 0
    fi
    TM_CONTEXT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/nebtwist-ctx.XXXXXX")
    mkdir "$TM_CONTEXT_TMP/iso"
    exec_and_log "cp -- $(q "$_tm_ctx") $(q "$TM_CONTEXT_TMP/iso/context.sh")" \
        "Error reading $_tm_ctx"
    for _tm_f in "$@"; do
        exec_and_log "cp -R -- $(q "$_tm_f") $(q "$TM_CONTEXT_TMP/iso/")" \
            "Error reading context file $_tm_f"
    done
    if command -v genisoimage >/dev/null 2>&1; then
        _tm_mk=genisoimage
    elif command -v mkisofs >/dev/null 2>&1; then
        _tm_mk=mkisofs
    else
        fail "genisoimage or mkisofs is needed to build the context image"
    fi
    exec_and_log "$_tm_mk -quiet -o $(q "$TM_CONTEXT_TMP/context.iso") -V CONTEXT -J -R $(q "$TM_CONTEXT_TMP/iso")" \
        "Error building the context image"
    TM_CONTEXT_ISO="$TM_CONTEXT_TMP/context.iso"
}

context_cleanup() {
    [ -z "$TM_CONTEXT_TMP" ] || rm -rf "$TM_CONTEXT_TMP"
}
