# shellcheck shell=bash
# Sourced by train.sbatch: signal the trainer named by OUTPUT/trainer.pid, and only that process.
# The trainer writes the file as "PID START HOST" once it catches SIGUSR1 (harmonic_forecast/preemption.py);
# START is field 22 of /proc/PID/stat. A file left by a killed trainer names a PID that is gone or that
# another process reuses, with another start time: it is never signalled.

# trainer_pid FILE: print the PID in FILE if that is a live process on this host started when FILE says
trainer_pid() {
  local pid start host stat
  local -a fields
  [ -r "$1" ] || return 1
  read -r pid start host _ < "$1" || return 1
  [[ $pid =~ ^[1-9][0-9]*$ && $start =~ ^[0-9]+$ ]] || return 1
  [ "$host" = "${HOSTNAME:-$(uname -n)}" ] || return 1
  read -r stat < "/proc/$pid/stat" 2> /dev/null || return 1
  read -r -a fields <<< "${stat##*) }"  # fields 3, 4, ...: the command name (field 2) may hold anything
  [ "${fields[19]:-}" = "$start" ] || return 1
  echo "$pid"
}

# signal_trainer FILE SIGNAL: send SIGNAL to the trainer FILE names; fails, sending nothing, if it names none
signal_trainer() {
  local pid
  pid=$(trainer_pid "$1") || return 1
  kill -s "$2" "$pid" 2> /dev/null
}
