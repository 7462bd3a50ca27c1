#!/usr/bin/env perl
# utils/run.pl: run a command, or an array of jobs, on this machine, with Kaldi's calling convention
# so that cmd.sh can switch between this and a cluster backend (utils/slurm.pl) without touching the
# recipe:
#
#   run.pl [options] [JOB=a:b] <log> <command>...
#
# With JOB=a:b (any upper/lower-case variable name works, e.g. SPLIT=1:4) the jobs a..b run in
# parallel, every occurrence of the name in <log> and <command> replaced by the job's number, as in
# Kaldi. Each log gets a header (`# <command>`, `# Started at <date>`), the command's stdout and
# stderr, and a footer (`# Accounting: time=<s> threads=<n>`, `# Ended (code <c>) at <date>, elapsed
# time <s> seconds`). The command is run by `bash -c`; arguments without whitespace are passed to it
# as they are (so `\|` or `ark:-` work as in Kaldi recipes), others are single-quoted.
#
# Options:
#   --max-jobs-run N   run at most N jobs at a time (default: all of them)
#   --num-threads N    accepted for cluster backends; recorded in the header and in the Accounting line
#   --mem X, --gpu N   accepted for cluster backends and recorded in the header; run.pl ignores them
# Option names may use '_' for '-' and be written --opt=value.
#
# Exit status 0 if every job succeeded; otherwise 1, after printing
#   run.pl: F / N failed, log is in <log with the job variable replaced by *>
#   run.pl: <log of the first failed job>: <the last line the command wrote there>
# (the second line when the command wrote anything: the project's CLIs end a failure with a one-line
# reason, which the user then sees without opening the log).
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);

my $usage = "Usage: run.pl [--max-jobs-run N] [--num-threads N] [--mem X] [--gpu N] [JOB=a:b] <log> <command>...\n";

sub fail {
    print STDERR "run.pl: $_[0]\n";
    exit 1;
}

# Options and the job range may come in either order before the log path (Kaldi allows both).
my ($max_jobs, $threads) = (0, 1);
my @recorded;    # cluster options, echoed in each log header
my ($job_var, $first, $last);
while (@ARGV) {
    if ($ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
        ($job_var, $first, $last) = ($1, $2, $3 // $2);
        shift @ARGV;
        fail("empty job range $job_var=$first:$last (the first job is after the last)") if $first > $last;
        next;
    }
    last unless $ARGV[0] =~ /^--/;
    my ($opt, $value) = split /=/, shift(@ARGV), 2;
    if (!defined $value) {
        fail("option $opt needs a value\n$usage") unless @ARGV;
        $value = shift @ARGV;
    }
    (my $name = $opt) =~ tr/_/-/;
    if ($name eq '--max-jobs-run') {
        fail("--max-jobs-run takes a positive integer, not '$value'") unless $value =~ /^[1-9]\d*$/;
        $max_jobs = $value;
    } elsif ($name eq '--num-threads' || $name eq '--gpu') {
        fail("$opt takes a non-negative integer, not '$value'") unless $value =~ /^\d+$/;
        $threads = $value if $name eq '--num-threads';
        push @recorded, "$name $value";
    } elsif ($name eq '--mem') {
        push @recorded, "$name $value";
    } else {
        fail("unknown option $opt\n$usage");
    }
}
fail("missing log path or command\n$usage") if @ARGV < 2;
my $log_template = shift @ARGV;
if (defined $job_var && $log_template !~ /\Q$job_var\E/ && $last > $first) {
    fail("log path $log_template has no $job_var, so all jobs would write one file; put $job_var in it");
}
my $command = join ' ', map { /^\S+$/ ? $_ : "'" . s/'/'\\''/gr . "'" } @ARGV;

sub for_job {
    my ($text, $id) = @_;
    $text =~ s/\Q$job_var\E/$id/g if defined $job_var;
    return $text;
}

# Runs in a child process: one job, its output appended to its log; returns the command's exit code.
sub run_job {
    my ($id) = @_;
    my ($log, $cmd) = (for_job($log_template, $id), for_job($command, $id));
    eval { make_path(dirname($log)) };
    open(my $fh, '>', $log) or fail("cannot write log $log: $!");
    open(STDOUT, '>&', $fh) or fail("cannot redirect stdout to $log: $!");
    open(STDERR, '>&', $fh) or fail("cannot redirect stderr to $log: $!");
    $| = 1;
    print "# $cmd\n# Started at " . localtime() . "\n";
    print "# Cluster options (ignored by run.pl): @recorded\n" if @recorded;
    print "#\n";
    my $start = time();
    system('bash', '-c', $cmd);
    my $code = $? == -1 ? 127 : $? & 127 ? 128 + ($? & 127) : $? >> 8;
    my $elapsed = time() - $start;
    print "# Accounting: time=$elapsed threads=$threads\n";
    print "# Ended (code $code) at " . localtime() . ", elapsed time $elapsed seconds\n";
    return $code;
}

# The last non-empty line the command wrote into `log` (not run.pl's own `#` lines; of a line that
# carriage returns overwrote, as progress bars do, what is left visible); undef if it wrote none.
sub last_output_line {
    my ($log) = @_;
    open(my $fh, '<', $log) or return undef;
    my $last;
    while (my $line = <$fh>) {
        $line =~ s/\s+$//;
        $line = (split /\r/, $line)[-1] // '';
        $last = $line if $line =~ /\S/ && $line !~ /^#( |$)/;
    }
    return $last;
}

my $num_jobs = 0;
my (%running, @failed_ids);  # pid -> job id; the ids of the jobs that failed
sub reap_one {
    my $pid = wait();
    my $id = delete $running{$pid};
    push @failed_ids, $id if $? != 0;
}
for my $id (defined $job_var ? ($first .. $last) : (1)) {
    reap_one() if $max_jobs && keys(%running) >= $max_jobs;
    my $pid = fork();
    fail("cannot fork: $!") unless defined $pid;
    exit(run_job($id) == 0 ? 0 : 1) if $pid == 0;
    $running{$pid} = $id;
    $num_jobs++;
}
reap_one() while %running;

if (@failed_ids) {
    (my $shown = $log_template) =~ s/\Q$job_var\E/*/g if defined $job_var;
    print STDERR "run.pl: " . scalar(@failed_ids) . " / $num_jobs failed, log is in " . ($shown // $log_template) . "\n";
    my ($first_log) = map { for_job($log_template, $_) } sort { $a <=> $b } @failed_ids;
    my $reason = last_output_line($first_log);
    print STDERR "run.pl: $first_log: $reason\n" if defined $reason;
    exit 1;
}
exit 0;
