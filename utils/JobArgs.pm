# utils/JobArgs.pm: what run.pl and slurm.pl share, so that both keep one calling convention (Kaldi's):
#
#   <runner> [options] [JOB=a:b] <log> <command>...
#
# (JOB=i,j,k, a list of job numbers, is an extension of Kaldi's: an experiment grid resubmits only the
# tasks that did not finish.)
#
# parse() reads that command line; for_job() puts a job's number in place of the job variable;
# report_failures() prints the one summary both runners end a failure with.
package JobArgs;
use strict;
use warnings;
use Exporter qw(import);
our @EXPORT_OK = qw(parse for_job quote_for_bash report_failures);

# The resource options every runner accepts (run.pl records them; slurm.pl maps them to sbatch through
# its config). Names are written with '-'; '_' is accepted too (--num_threads).
our @CLUSTER_OPTIONS = qw(--mem --gpu --num-threads --time --mail-type --dependency --wait);

sub fail {
    my ($prog, $msg) = @_;
    print STDERR "$prog: $msg\n";
    exit 1;
}

# Returns a hash: options => [[name, value], ...] in command-line order, job_var/first/last (undef
# without a job range), log (the template), words (the command's arguments as given), command (one
# string for `bash -c`: arguments without whitespace as they are, so `\|` or `ark:-` work as in Kaldi;
# others single-quoted), ids (the job numbers).
sub parse {
    my ($prog, $usage, @argv) = @_;
    my (@options, $job_var, $first, $last, @ids);
    while (@argv) {  # options and the job range may come in either order before the log (Kaldi allows both)
        if ($argv[0] =~ /^([A-Za-z_]\w*)=(\d+)(?::(\d+))?$/) {
            ($job_var, $first, $last) = ($1, $2, $3 // $2);
            shift @argv;
            fail($prog, "empty job range $job_var=$first:$last (the first job is after the last)") if $first > $last;
            @ids = ($first .. $last);
            next;
        }
        if ($argv[0] =~ /^([A-Za-z_]\w*)=(\d+(?:,\d+)+)$/) {
            $job_var = $1;
            @ids = sort { $a <=> $b } split /,/, $2;
            ($first, $last) = ($ids[0], $ids[-1]);
            shift @argv;
            next;
        }
        last unless $argv[0] =~ /^--/;
        my ($opt, $value) = split /=/, shift(@argv), 2;
        if (!defined $value) {
            fail($prog, "option $opt needs a value\n$usage") unless @argv;
            $value = shift @argv;
        }
        (my $name = $opt) =~ tr/_/-/;
        push @options, [$name, $value];
    }
    fail($prog, "missing log path or command\n$usage") if @argv < 2;
    my $log = shift @argv;
    if (defined $job_var && $log !~ /\Q$job_var\E/ && $last > $first) {
        fail($prog, "log path $log has no $job_var, so all jobs would write one file; put $job_var in it");
    }
    my $command = join ' ', map { /^\S+$/ ? $_ : quote_for_bash($_) } @argv;
    return (options => \@options, job_var => $job_var, first => $first, last => $last, log => $log,
            words => [@argv], command => $command, ids => [defined $job_var ? @ids : (1)]);
}

sub quote_for_bash {
    my ($text) = @_;
    return "'" . $text =~ s/'/'\\''/gr . "'";
}

sub for_job {
    my ($text, $job_var, $id) = @_;
    $text =~ s/\Q$job_var\E/$id/g if defined $job_var;
    return $text;
}

# The last non-empty line the command wrote into `log` (not the runner's own `#` lines; of a line that
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

# Prints `<prog>: F / N failed, log is in <log with the job variable as *>` and, when the first failed
# job's command wrote anything, `<prog>: <its log>: <the last line it wrote>` (the project's CLIs end a
# failure with a one-line reason); then exits 1. `%reasons` (job id -> text) replaces that last line
# for jobs that ended without running to their end (killed by the cluster).
sub report_failures {
    my ($prog, $args, $failed, %reasons) = @_;
    my ($template, $job_var) = ($args->{log}, $args->{job_var});
    (my $shown = $template) =~ s/\Q$job_var\E/*/g if defined $job_var;
    print STDERR "$prog: " . scalar(@$failed) . " / " . scalar(@{$args->{ids}}) . " failed, log is in "
        . ($shown // $template) . "\n";
    my ($first_id) = sort { $a <=> $b } @$failed;
    my $first_log = for_job($template, $job_var, $first_id);
    my $reason = $reasons{$first_id} // last_output_line($first_log);
    print STDERR "$prog: $first_log: $reason\n" if defined $reason;
    exit 1;
}

1;
