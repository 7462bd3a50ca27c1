#!/usr/bin/env perl
# utils/slurm.pl: run.pl's contract on a Slurm cluster.
#
#   slurm.pl [--config conf/slurm.conf] [options] [JOB=a:b] <log> <command>...
#
# One `sbatch --array=a-b[%M]` per call; each array task runs its job through utils/run.pl, so every
# task log has run.pl's header (with SLURM_JOB_ID and SLURM_ARRAY_TASK_ID) and footer, and JOB is
# replaced by the task's number in <log> and <command>. slurm.pl then waits for the array and, as
# run.pl does, exits 0 when every task ended with code 0, else 1 naming the failed tasks' logs.
# Inside a task OMP_NUM_THREADS is the CPUs Slurm gave it (SLURM_CPUS_PER_TASK), so thread counts are
# decided on the compute node, not on the submitting host.
#
# Options (Kaldi's generic names; '_' may be written for '-'):
#   --max-jobs-run N   at most N tasks of the array at once (sbatch --array=a-b%N)
#   --num-threads N, --mem X, --gpu N, --time T, --mail-type T, and any option the config defines:
#                      mapped to sbatch options by the config's lines (Kaldi's slurm.pl format):
#       command sbatch --export=ALL          the submit command and its fixed options
#       option mem=* --mem=$0                 any value: $0 is replaced by it
#       option gpu=0                          this exact value: no sbatch option at all
#       default gpu=0                         the value used when the option is not given
#   --config FILE      default: conf/slurm.conf where it exists, else the built-in lines below
#   --dependency D     sbatch --dependency=D --kill-on-invalid-dep=yes: with aftercorr:<array id>, each
#                      task starts when the same-numbered task of that array succeeded, and is cancelled
#                      (not left pending) when it failed
#   --wait false       submit, print the array's job id and return (what --dependency chains need)
#   --dry-run true     print the sbatch command and the batch script; submit nothing
#
# A request the cluster can never satisfy (more memory or GPUs than any node has, an unknown
# partition) fails at once with sbatch's reason; so does a task that Slurm leaves pending for a reason
# that cannot clear (listed in NEVER_RUNS). Ctrl-C cancels the array. Slurm's own output of each task
# (what happened before run.pl started, and the reason it was killed) goes to <log dir>/q/.
use strict;
use warnings;
use File::Basename qw(basename dirname);
use File::Path qw(make_path);
use File::Spec;
use lib dirname(__FILE__);
use JobArgs qw(for_job quote_for_bash);

my $prog = 'slurm.pl';
my $usage = "Usage: slurm.pl [--config conf/slurm.conf] [--max-jobs-run N] [--num-threads N] [--mem X] [--gpu N] [--time T] [JOB=a:b] <log> <command>...\n";
my $default_config = <<'CONF';
command sbatch --export=ALL
option mem=* --mem=$0
option num_threads=* --cpus-per-task=$0
option gpu=0
option gpu=* --gres=gpu:$0
option time=* --time=$0
option mail_type=* --mail-type=$0
default gpu=0
CONF
# Pending reasons that no amount of waiting clears (squeue %r): the request exceeds the partition or node.
my @NEVER_RUNS = qw(BadConstraints PartitionConfig PartitionNodeLimit PartitionTimeLimit InvalidAccount
                    InvalidQOS QOSMaxCpuPerJobLimit QOSMaxMemoryPerJob QOSMaxGRESPerJob);

my %args = JobArgs::parse($prog, $usage, @ARGV);
my ($config_file, $max_jobs, $dependency, $wait, $dry_run, %given) = (undef, 0, undef, 'true', 'false');
for (@{$args{options}}) {
    my ($name, $value) = @$_;
    if ($name eq '--config') { $config_file = $value; }
    elsif ($name eq '--dependency') { $dependency = $value; }
    elsif ($name eq '--wait' || $name eq '--dry-run') {
        JobArgs::fail($prog, "$name takes true or false, not '$value'") unless $value =~ /^(true|false)$/;
        ($name eq '--wait' ? $wait : $dry_run) = $value;
    }
    elsif ($name eq '--max-jobs-run') {
        JobArgs::fail($prog, "--max-jobs-run takes a positive integer, not '$value'") unless $value =~ /^[1-9]\d*$/;
        $max_jobs = $value;
    } else { ($given{substr($name, 2) =~ tr/-/_/r}) = $value; }
}
$config_file //= 'conf/slurm.conf' if -f 'conf/slurm.conf';
for my $tool (qw(sbatch squeue scancel)) {
    next if $dry_run eq 'true' || grep { -x File::Spec->catfile($_, $tool) } File::Spec->path();
    JobArgs::fail($prog, "$tool not found; Slurm is not installed here; use cmd_backend=local in cmd.sh");
}

# The config: (submit command, { option => { value or '*' => sbatch options } }, { option => default }).
sub read_config {
    my ($file) = @_;
    my $text = $default_config;
    if (defined $file) {
        open(my $fh, '<', $file) or JobArgs::fail($prog, "cannot read the config $file: $!; give --config an existing file");
        local $/;
        $text = <$fh>;
    }
    my ($command, %rules, %defaults);
    my $where = $file // 'the built-in config';
    for my $line (split /\n/, $text) {
        $line =~ s/#.*//;
        next unless $line =~ /\S/;
        if ($line =~ /^\s*command\s+(.+?)\s*$/) { $command = $1; }
        elsif ($line =~ /^\s*option\s+(\w+)=(\S+)\s*(.*?)\s*$/) { $rules{$1}{$2} = $3; }
        elsif ($line =~ /^\s*default\s+(\w+)=(\S+)\s*$/) { $defaults{$1} = $2; }
        else { JobArgs::fail($prog, "$where: cannot read the line '$line' (command ..., option NAME=VALUE|* ..., default NAME=VALUE)"); }
    }
    JobArgs::fail($prog, "$where has no 'command sbatch ...' line; add one") unless defined $command;
    return ($command, \%rules, \%defaults, $where);
}
my ($submit, $rules, $defaults, $where) = read_config($config_file);

my @sbatch_options;
my %values = (%$defaults, %given);
for my $name (sort keys %values) {
    my $value = $values{$name};
    my $rule = $rules->{$name}{$value} // $rules->{$name}{'*'};
    JobArgs::fail($prog, "--" . ($name =~ tr/_/-/r) . " $value: $where has no 'option $name=...' line for it; add one")
        unless defined $rule;
    push @sbatch_options, split ' ', $rule =~ s/\$0/$value/gr;
}

# The batch script: one array task = run.pl on one job number, under the task's own CPU count.
my @ids = @{$args{ids}};
my $log_dir = dirname($args{log});
$log_dir =~ s/\Q$args{job_var}\E/array/g if defined $args{job_var};
my $qdir = "$log_dir/q";
make_path($qdir);
(my $name = basename($args{log})) =~ s/\.log$//;
$name =~ s/\Q$args{job_var}\E//g if defined $args{job_var};
$name =~ s/[^\w.-]+/_/g;
$name =~ s/\.{2,}/./g;
$name =~ s/^\.|\.$//g;
my $script = "$qdir/$name.sh";
my $job_var = $args{job_var} // 'JOB';
my $run_pl = File::Spec->rel2abs(dirname(__FILE__)) . '/run.pl';
open(my $sh, '>', $script) or JobArgs::fail($prog, "cannot write $script: $!");
print $sh "#!/bin/bash\n# written by slurm.pl; one array task per job\n"
    . "cd " . quote_for_bash(File::Spec->rel2abs('.')) . "\n"
    . "export OMP_NUM_THREADS=\${SLURM_CPUS_PER_TASK:-1}\n"
    . "exec " . join(' ', map { quote_for_bash($_) } $run_pl, '--num-threads')
    . " \"\$OMP_NUM_THREADS\" $job_var=\$SLURM_ARRAY_TASK_ID "
    . join(' ', map { quote_for_bash($_) } $args{log}, @{$args{words}}) . "\n";
close $sh;

my $contiguous = $ids[-1] - $ids[0] + 1 == @ids;
my $array = ($contiguous ? ($ids[0] == $ids[-1] ? $ids[0] : "$ids[0]-$ids[-1]") : join(',', @ids))
    . ($max_jobs ? "%$max_jobs" : '');
my @submit = (split(' ', $submit), '--parsable', "--array=$array", "--job-name=$name",
              "--output=$qdir/$name-%a.out", @sbatch_options,
              (defined $dependency ? ("--dependency=$dependency", '--kill-on-invalid-dep=yes') : ()), $script);
if ($dry_run eq 'true') {
    print join(' ', map { quote_for_bash($_) } @submit) . "\n";
    open(my $fh, '<', $script) or JobArgs::fail($prog, "cannot read $script: $!");
    print "# $script:\n", <$fh>;
    exit 0;
}
unlink for_job($args{log}, $args{job_var}, $_) for @ids;  # a stale log must not read as this run's
my $answer = `@{[join ' ', map { quote_for_bash($_) } @submit]} 2>&1`;
if ($? != 0) {
    my @lines = map { s/^sbatch: error: //r } grep { /\S/ } split /\n/, $answer;
    JobArgs::fail($prog, "sbatch refused the job: " . (join('; ', @lines) || 'no reason given')
                  . " (sbatch options: @sbatch_options, from $where)");
}
my ($job_id) = $answer =~ /^(\d+)/m or JobArgs::fail($prog, "sbatch answered '$answer', not a job id");
if (open(my $idf, '>', "$qdir/$name.job_id")) { print $idf "$job_id\n"; }  # for scancel, sacct

if ($wait eq 'false') {
    print "$job_id\n";
    exit 0;
}
$SIG{INT} = $SIG{TERM} = sub { system('scancel', $job_id); print STDERR "$prog: cancelled job $job_id\n"; exit 130; };

# Wait until no task is pending or running; give up at once on a reason that never clears.
my $delay = 0.5;
while (1) {
    my @queued = grep { /\S/ } split /\n/, `squeue -h -j $job_id -o '%T %r' 2>/dev/null`;
    last unless @queued;
    for (@queued) {
        my ($state, $reason) = split ' ', $_, 2;
        next unless $state eq 'PENDING' && grep { $reason eq $_ } @NEVER_RUNS;
        system('scancel', $job_id);
        JobArgs::fail($prog, "job $job_id can never run on this cluster ($reason); cancelled. Ask for less (sbatch options: @sbatch_options)");
    }
    select(undef, undef, undef, $delay);
    $delay = $delay < 5 ? $delay * 1.5 : 5;
}

# A task succeeded when run.pl's footer in its log says code 0. No footer: Slurm killed it (time
# limit, memory, scancel) or it never started; its reason is the last line of Slurm's own output.
my (@failed, %reasons);
for my $id (@ids) {
    my $log = for_job($args{log}, $args{job_var}, $id);
    my $code;
    if (open(my $fh, '<', $log)) { while (<$fh>) { $code = $1 if /^# Ended \(code (\d+)\)/; } }
    next if defined $code && $code == 0;
    push @failed, $id;
    next if defined $code;
    my $out = "$qdir/$name-$id.out";
    my $said = JobArgs::last_output_line($out);
    $reasons{$id} = "ended without run.pl's footer (killed by Slurm?)" . (defined $said ? ": $said" : "; see $out");
}
JobArgs::report_failures($prog, \%args, \@failed, %reasons) if @failed;
exit 0;
