#!/usr/bin/env perl
# utils/run.pl: run a command, or an array of jobs, on this machine, with Kaldi's calling convention
# so that cmd.sh can switch between this and a cluster backend (utils/slurm.pl) without touching the
# recipe:
#
#   run.pl [options] [JOB=a:b] <log> <command>...
#
# With JOB=a:b (any upper/lower-case variable name works, e.g. SPLIT=1:4) the jobs a..b run in
# parallel, every occurrence of the name in <log> and <command> replaced by the job's number, as in
# Kaldi. Each log gets a header (`# <command>`, `# Started at <date>`, and under Slurm the job's
# SLURM_JOB_ID and SLURM_ARRAY_TASK_ID), the command's stdout and stderr, and a footer
# (`# Accounting: time=<s> threads=<n>`, `# Ended (code <c>) at <date>, elapsed time <s> seconds`).
# The command is run by `bash -c`; arguments without whitespace are passed to it as they are (so `\|`
# or `ark:-` work as in Kaldi recipes), others are single-quoted. slurm.pl runs each array task
# through this script, so a task's log reads the same on a laptop and on a cluster.
#
# Options:
#   --max-jobs-run N   run at most N jobs at a time (default: all of them)
#   --num-threads N    the threads each job may use: exported to it as OMP_NUM_THREADS (torch's
#                      default thread count), and recorded in the Accounting line
#   --mem X, --gpu N, --time T, --mail-type T, --dependency D, --wait B
#                      slurm.pl's: accepted, recorded in the header, ignored here (jobs here run when
#                      called, so a dependency on an earlier call always holds)
# Option names may use '_' for '-' and be written --opt=value.
#
# Exit status 0 if every job succeeded; otherwise 1, after printing
#   run.pl: F / N failed, log is in <log with the job variable replaced by *>
#   run.pl: <log of the first failed job>: <the last line the command wrote there>
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use lib dirname(__FILE__);
use JobArgs qw(for_job);

my $usage = "Usage: run.pl [--max-jobs-run N] [--num-threads N] [--mem X] [--gpu N] [--time T] [JOB=a:b] <log> <command>...\n";
my %args = JobArgs::parse('run.pl', $usage, @ARGV);

my ($max_jobs, $threads) = (0, undef);
my @recorded;    # cluster options, echoed in each log header
for (@{$args{options}}) {
    my ($name, $value) = @$_;
    if ($name eq '--max-jobs-run') {
        JobArgs::fail('run.pl', "--max-jobs-run takes a positive integer, not '$value'") unless $value =~ /^[1-9]\d*$/;
        $max_jobs = $value;
    } elsif (grep { $_ eq $name } @JobArgs::CLUSTER_OPTIONS) {
        if ($name eq '--num-threads' || $name eq '--gpu') {
            JobArgs::fail('run.pl', "$name takes a non-negative integer, not '$value'") unless $value =~ /^\d+$/;
        }
        $threads = $value if $name eq '--num-threads';
        push @recorded, "$name $value";
    } else {
        JobArgs::fail('run.pl', "unknown option $name\n$usage");
    }
}

# Runs in a child process: one job, its output written to its log; returns the command's exit code.
sub run_job {
    my ($id) = @_;
    my ($log, $cmd) = (for_job($args{log}, $args{job_var}, $id), for_job($args{command}, $args{job_var}, $id));
    eval { make_path(dirname($log)) };
    open(my $fh, '>', $log) or JobArgs::fail('run.pl', "cannot write log $log: $!");
    open(STDOUT, '>&', $fh) or JobArgs::fail('run.pl', "cannot redirect stdout to $log: $!");
    open(STDERR, '>&', $fh) or JobArgs::fail('run.pl', "cannot redirect stderr to $log: $!");
    $| = 1;
    print "# $cmd\n# Started at " . localtime() . "\n";
    if (defined $ENV{SLURM_JOB_ID}) {
        chomp(my $host = `hostname`);
        print "# SLURM_JOB_ID=$ENV{SLURM_JOB_ID} SLURM_ARRAY_JOB_ID=" . ($ENV{SLURM_ARRAY_JOB_ID} // '')
            . " SLURM_ARRAY_TASK_ID=" . ($ENV{SLURM_ARRAY_TASK_ID} // '') . " on $host\n";
    }
    print "# Cluster options (ignored by run.pl): @recorded\n" if @recorded && !defined $ENV{SLURM_JOB_ID};
    print "#\n";
    $ENV{OMP_NUM_THREADS} = $threads if defined $threads;
    my $start = time();
    system('bash', '-c', $cmd);
    my $code = $? == -1 ? 127 : $? & 127 ? 128 + ($? & 127) : $? >> 8;
    my $elapsed = time() - $start;
    print "# Accounting: time=$elapsed threads=" . ($threads // 1) . "\n";
    print "# Ended (code $code) at " . localtime() . ", elapsed time $elapsed seconds\n";
    return $code;
}

my (%running, @failed_ids);  # pid -> job id; the ids of the jobs that failed
sub reap_one {
    my $pid = wait();
    my $id = delete $running{$pid};
    push @failed_ids, $id if $? != 0;
}
for my $id (@{$args{ids}}) {
    reap_one() if $max_jobs && keys(%running) >= $max_jobs;
    my $pid = fork();
    JobArgs::fail('run.pl', "cannot fork: $!") unless defined $pid;
    exit(run_job($id) == 0 ? 0 : 1) if $pid == 0;
    $running{$pid} = $id;
}
reap_one() while %running;
JobArgs::report_failures('run.pl', \%args, \@failed_ids) if @failed_ids;
exit 0;
