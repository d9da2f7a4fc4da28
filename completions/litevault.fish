# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_litevault_global_optspecs
    string join \n c/config= q/quiet json metrics-file= h/help V/version
end

function __fish_litevault_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_litevault_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_litevault_using_subcommand
    set -l cmd (__fish_litevault_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c litevault -n "__fish_litevault_needs_command" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_needs_command" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_needs_command" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_needs_command" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_needs_command" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_needs_command" -s V -l version -d 'Print version'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "backup" -d 'Take a backup and store it on every (or each named) destination'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "list" -d 'List complete backups, newest first'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "ls" -d 'List complete backups, newest first'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "restore" -d 'Restore a backup into a folder'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "show" -d 'Show what a backup holds and where, from its sidecar: no key needed, nothing downloaded'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "stats" -d 'Sum up what each destination holds: good backups (full, incremental), bytes, oldest, newest'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "verify" -d 'Prove that backups are intact and restorable'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "prune" -d 'Delete backups that the retention policy no longer keeps'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "copy" -d 'Copy backups from one destination to another: by default every backup the other lacks'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "rekey" -d 'Re-encrypt stored backups to the current recipients (and re-sign them), one at a time'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "check" -d 'Check the config, open each source as a backup would, and test each destination'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "history" -d 'Show recorded runs from the execution store, newest first'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "key" -d 'Make keys: an age identity to encrypt to, or an SSH key to sign backups with'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "man" -d 'Write the man pages into a folder'
complete -c litevault -n "__fish_litevault_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c litevault -n "__fish_litevault_using_subcommand backup" -s d -l dest -d 'Store only on this destination (repeat for several) [default: all]' -r
complete -c litevault -n "__fish_litevault_using_subcommand backup" -l wait -d 'If another run holds the lock, wait this long for it (e.g. 10m) instead of exiting 5' -r
complete -c litevault -n "__fish_litevault_using_subcommand backup" -l if-older-than -d 'Do nothing (exit 0) when every selected destination has a backup younger than this' -r
complete -c litevault -n "__fish_litevault_using_subcommand backup" -l retries -d 'Retry a failed run this many times (on top of each request\'s own retries)' -r
complete -c litevault -n "__fish_litevault_using_subcommand backup" -l retry-delay -d 'Wait before the first retry; doubled before each next one' -r
complete -c litevault -n "__fish_litevault_using_subcommand backup" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand backup" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand backup" -l full -d 'Take a full backup even when [incremental] would allow an incremental one'
complete -c litevault -n "__fish_litevault_using_subcommand backup" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand backup" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand backup" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand list" -s d -l dest -d 'List only this destination [default: all]' -r
complete -c litevault -n "__fish_litevault_using_subcommand list" -l as-of -d 'See the destinations as they were at TIME (RFC 3339, or a duration ago: 2h, 3d): backups deleted or overwritten since come back from the bucket\'s versions (S3 with versioning)' -r
complete -c litevault -n "__fish_litevault_using_subcommand list" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand list" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand list" -l all-hosts -d 'Every host\'s folder in the destination: each host\'s newest good backup and count (with --metrics-file, written per host for Prometheus)'
complete -c litevault -n "__fish_litevault_using_subcommand list" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand list" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand list" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand ls" -s d -l dest -d 'List only this destination [default: all]' -r
complete -c litevault -n "__fish_litevault_using_subcommand ls" -l as-of -d 'See the destinations as they were at TIME (RFC 3339, or a duration ago: 2h, 3d): backups deleted or overwritten since come back from the bucket\'s versions (S3 with versioning)' -r
complete -c litevault -n "__fish_litevault_using_subcommand ls" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand ls" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand ls" -l all-hosts -d 'Every host\'s folder in the destination: each host\'s newest good backup and count (with --metrics-file, written per host for Prometheus)'
complete -c litevault -n "__fish_litevault_using_subcommand ls" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand ls" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand ls" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l at -d 'Restore the newest good backup taken at or before TIME (RFC 3339, or a duration ago: 2h, 3d) instead of naming one' -r
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l to -d 'Folder to restore into; each source becomes DIR/<source name>' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l only -d 'Restore only this source, or one database or file by its path in the backup (tenants/a.db), or all that a pattern matches (\'tenants/*.db\'); repeat for several [default: all in the backup]' -r
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l wait -d 'With --in-place: if another run holds the lock, wait this long for it' -r
complete -c litevault -n "__fish_litevault_using_subcommand restore" -s d -l dest -d 'Destination to restore from [default: the first that holds the backup]' -r
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l as-of -d 'See the destinations as they were at TIME (RFC 3339, or a duration ago: 2h, 3d): backups deleted or overwritten since come back from the bucket\'s versions (S3 with versioning). Not --at: --as-of is the bucket\'s past, --at the backup chosen within it' -r
complete -c litevault -n "__fish_litevault_using_subcommand restore" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l dry-run -d 'Show the plan (the backups read, the bytes downloaded, the space needed, the checks, an estimate of the time) without downloading any archive or changing anything'
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l in-place -d 'Put each source back at its configured path, on this server (see the README first)'
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l no-safety-backup -d 'With --in-place: do not back up the current state before replacing it'
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l force -d 'With --in-place: replace databases even if another process has them open'
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l deep -d 'Run integrity_check on each database instead of quick_check'
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l same-owner -d 'With --to, as root: give each restored file and folder the owner, group and mode the backup recorded [default: 0600 files in 0700 folders, owned by whoever restores]'
complete -c litevault -n "__fish_litevault_using_subcommand restore" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand restore" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand restore" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand show" -s d -l dest -d 'Look on this destination only [default: all]' -r
complete -c litevault -n "__fish_litevault_using_subcommand show" -l as-of -d 'See the destinations as they were at TIME (RFC 3339, or a duration ago: 2h, 3d): backups deleted or overwritten since come back from the bucket\'s versions (S3 with versioning)' -r
complete -c litevault -n "__fish_litevault_using_subcommand show" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand show" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand show" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand show" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand show" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand stats" -s d -l dest -d 'Only this destination [default: all]' -r
complete -c litevault -n "__fish_litevault_using_subcommand stats" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand stats" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand stats" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand stats" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand stats" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand verify" -l sample -d 'Verify a rotating share of each destination\'s stored bytes (5%) or an amount (2GiB): the backups never verified first, then those verified longest ago' -r
complete -c litevault -n "__fish_litevault_using_subcommand verify" -s d -l dest -d 'Verify on this destination only [default: all]' -r
complete -c litevault -n "__fish_litevault_using_subcommand verify" -l as-of -d 'See the destinations as they were at TIME (RFC 3339, or a duration ago: 2h, 3d): backups deleted or overwritten since come back from the bucket\'s versions (S3 with versioning)' -r
complete -c litevault -n "__fish_litevault_using_subcommand verify" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand verify" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand verify" -l all -d 'Verify every backup'
complete -c litevault -n "__fish_litevault_using_subcommand verify" -l restore-test -d 'A restore drill: also run foreign_key_check and compare row counts with the manifest, and print a report per database'
complete -c litevault -n "__fish_litevault_using_subcommand verify" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand verify" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand verify" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand prune" -s d -l dest -d 'Prune this destination only [default: all]' -r
complete -c litevault -n "__fish_litevault_using_subcommand prune" -l wait -d 'If another run holds the lock, wait this long for it instead of exiting 5' -r
complete -c litevault -n "__fish_litevault_using_subcommand prune" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand prune" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand prune" -s n -l dry-run -d 'Show what would be deleted and why, delete nothing'
complete -c litevault -n "__fish_litevault_using_subcommand prune" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand prune" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand prune" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand copy" -l from -d 'The destination to copy from' -r
complete -c litevault -n "__fish_litevault_using_subcommand copy" -l to -d 'The destination to copy to' -r
complete -c litevault -n "__fish_litevault_using_subcommand copy" -l wait -d 'If another run holds the lock, wait this long for it instead of exiting 5' -r
complete -c litevault -n "__fish_litevault_using_subcommand copy" -l as-of -d 'Copy from --from as it was at TIME (RFC 3339, or a duration ago: 2h, 3d), from the bucket\'s versions: the last step of recovering from an attack, into a clean destination' -r
complete -c litevault -n "__fish_litevault_using_subcommand copy" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand copy" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand copy" -l all -d 'Copy every backup --to lacks (the default, said explicitly)'
complete -c litevault -n "__fish_litevault_using_subcommand copy" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand copy" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand copy" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand rekey" -l adopt -d 'Also re-encrypt and re-sign this unsigned or foreign-signed backup: this host vouches for it from now on (repeatable)' -r
complete -c litevault -n "__fish_litevault_using_subcommand rekey" -s d -l dest -d 'Work on this destination only [default: all]' -r
complete -c litevault -n "__fish_litevault_using_subcommand rekey" -l wait -d 'If another run holds the lock, wait this long for it instead of exiting 5' -r
complete -c litevault -n "__fish_litevault_using_subcommand rekey" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand rekey" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand rekey" -l all -d 'Re-encrypt every backup not already encrypted to exactly the current recipients'
complete -c litevault -n "__fish_litevault_using_subcommand rekey" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand rekey" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand rekey" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand check" -s d -l dest -d 'Check only this destination (repeat for several) [default: all]' -r
complete -c litevault -n "__fish_litevault_using_subcommand check" -l role -d 'Check what this host\'s role needs, and nothing else [default: everything]' -r -f -a "backup\t'The server: adds backups; should not be able to delete them, nor hold an identity'
restore\t'A drill runner or workstation: reads and opens backups'
maintenance\t'A trusted host that prunes, re-keys and copies: needs delete and rename'"
complete -c litevault -n "__fish_litevault_using_subcommand check" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand check" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand check" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand check" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c litevault -n "__fish_litevault_using_subcommand history" -s n -l limit -d 'Show this many runs, newest first' -r
complete -c litevault -n "__fish_litevault_using_subcommand history" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand history" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand history" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand history" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand history" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand key; and not __fish_seen_subcommand_from generate help" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand key; and not __fish_seen_subcommand_from generate help" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand key; and not __fish_seen_subcommand_from generate help" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand key; and not __fish_seen_subcommand_from generate help" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand key; and not __fish_seen_subcommand_from generate help" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand key; and not __fish_seen_subcommand_from generate help" -f -a "generate" -d 'Write a new key to FILE (mode 0600, never over an existing file) and print its public half'
complete -c litevault -n "__fish_litevault_using_subcommand key; and not __fish_seen_subcommand_from generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c litevault -n "__fish_litevault_using_subcommand key; and __fish_seen_subcommand_from generate" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand key; and __fish_seen_subcommand_from generate" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand key; and __fish_seen_subcommand_from generate" -l signing -d 'An ed25519 SSH signing key (for [signing] key_file) instead of an age identity; its public line also goes to FILE.pub'
complete -c litevault -n "__fish_litevault_using_subcommand key; and __fish_seen_subcommand_from generate" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand key; and __fish_seen_subcommand_from generate" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand key; and __fish_seen_subcommand_from generate" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "generate" -d 'Write a new key to FILE (mode 0600, never over an existing file) and print its public half'
complete -c litevault -n "__fish_litevault_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c litevault -n "__fish_litevault_using_subcommand completions" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand completions" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand completions" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand completions" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand completions" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand man" -s c -l config -d 'Configuration file [default: $LITEVAULT_CONFIG, else /etc/litevault/litevault.toml]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand man" -l metrics-file -d 'Write Prometheus metrics here after the run [default: metrics_file in the config]' -r -F
complete -c litevault -n "__fish_litevault_using_subcommand man" -s q -l quiet -d 'Print nothing on success; errors still go to stderr'
complete -c litevault -n "__fish_litevault_using_subcommand man" -l json -d 'Print one JSON document on stdout instead of text'
complete -c litevault -n "__fish_litevault_using_subcommand man" -s h -l help -d 'Print help'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "backup" -d 'Take a backup and store it on every (or each named) destination'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "list" -d 'List complete backups, newest first'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "restore" -d 'Restore a backup into a folder'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "show" -d 'Show what a backup holds and where, from its sidecar: no key needed, nothing downloaded'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "stats" -d 'Sum up what each destination holds: good backups (full, incremental), bytes, oldest, newest'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "verify" -d 'Prove that backups are intact and restorable'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "prune" -d 'Delete backups that the retention policy no longer keeps'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "copy" -d 'Copy backups from one destination to another: by default every backup the other lacks'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "rekey" -d 'Re-encrypt stored backups to the current recipients (and re-sign them), one at a time'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "check" -d 'Check the config, open each source as a backup would, and test each destination'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "history" -d 'Show recorded runs from the execution store, newest first'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "key" -d 'Make keys: an age identity to encrypt to, or an SSH key to sign backups with'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "man" -d 'Write the man pages into a folder'
complete -c litevault -n "__fish_litevault_using_subcommand help; and not __fish_seen_subcommand_from backup list restore show stats verify prune copy rekey check history key completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c litevault -n "__fish_litevault_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "generate" -d 'Write a new key to FILE (mode 0600, never over an existing file) and print its public half'
