# frozen_string_literal: true

module Divvy
  class CLI
    # The exit status of a run the command saw through, and the list of
    # statuses `divvy --help` prints. Runs in the master.
    module ExitStatus
      # Exit status when the halt policy ended the run on failures
      # (`--halt soon,fail=3`): set apart from 1, so that a script can tell
      # a batch cut short from one that ran every item.
      HALTED = 3

      # @param master [Divvy::Master] the master after its run returned
      # @return [Integer] HALTED when a `fail=` halt ended the run; 0 when
      #   a `success=` halt did (its condition was met, as with GNU
      #   parallel), or when every item was performed; 1 when an item
      #   finally failed
      def self.of(master)
        if master.halted?
          master.halt.include?(',fail=') ? HALTED : 0
        else
          master.items_failed.zero? ? 0 : 1
        end
      end

      # What `divvy --help` says of the exit statuses.
      HELP = <<~TEXT.freeze
        Exit status:
            0        every item was performed, or a --halt success= condition was met
            1        an item finally failed, a hook raised, workers could not boot or the script could not run
            2        usage error
            #{HALTED}        --halt ended the run on failures (fail=N or fail=N%)
            128+N    signal N stopped the run (130 for INT, 143 for TERM)
      TEXT

      # Adds the list of exit statuses to the end of `opts`' help.
      #
      # @param opts [OptionParser] the command's parser
      # @return [void]
      def self.describe(opts)
        opts.separator ''
        HELP.each_line { |line| opts.separator(line.chomp) }
      end
    end
    private_constant :ExitStatus
  end
end
