# frozen_string_literal: true

module Divvy
  class CLI
    # The `--halt WHEN,COND` option: a halt policy in GNU parallel's words,
    # handed to Divvy::Master.new as `halt:`, which checks it (a bad value
    # is a usage error). Runs in the master.
    module Halt
      # Defines `--halt` on `opts`; the value goes to `options[:halt]`.
      #
      # @param opts [OptionParser] the command's parser
      # @param options [Hash] the keywords for Divvy::Master.new
      # @return [void]
      def self.define(opts, options)
        opts.on('--halt WHEN,COND', 'end the run once COND: fail=N, fail=N%, success=N or success=N% items',
                '(WHEN: soon lets the items in flight finish, now stops the workers)') do |policy|
          options[:halt] = policy
        end
      end
    end
    private_constant :Halt
  end
end
